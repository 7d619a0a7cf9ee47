// Owns: telling the user about new messages when the tab is hidden: a browser notification
// (once the user allowed them, from a button: browsers ask only after a user action) and the
// unread count in the tab's title.

export const supported = () => 'Notification' in window;

/** Whether the "Enable notifications" button should show. */
export const askable = () => supported() && Notification.permission === 'default';

/** Asks for permission (call from a click). */
export async function ask() {
  if (!supported()) return 'denied';
  return Notification.requestPermission();
}

/** A notification for a message, only while the tab is hidden; clicking it opens the chat. */
export function notify(title, body, tag, onClick) {
  if (!document.hidden || !supported() || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(title, { body, tag });
    n.onclick = () => {
      window.focus();
      onClick();
      n.close();
    };
  } catch {
    // Some browsers allow notifications only from a service worker: the title still counts.
  }
}

/** Shows the unread total in the tab's title. */
export function badge(total) {
  document.title = total > 0 ? `(${total}) natter` : 'natter';
}
