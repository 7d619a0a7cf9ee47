//! Push: who gets a notification, the durable queue, retries and dead tokens.
//!
//! After a message is committed, each recipient other than the sender is a candidate. A
//! recipient with no device online gets a job per push token at once; one with a device online
//! gets one only if no device has acknowledged the message after `push.grace_secs` (that wait
//! is in memory: a crash during it loses the push, not the message). Jobs live in the store,
//! collapsed per (device, chat), so a restart resumes them; a job is deleted as soon as the
//! provider accepts it, so a restart re-sends at most the one notification in flight, with the
//! same collapse key (the device shows it once).

use std::sync::Arc;
use std::time::Duration;

use natter_push::{backoff, Notification, Outcome, PushPlatform, Pusher};
use natter_store::{PushJob, PushToken, StoredMessage};
use natter_types::clock::now_ms;
use natter_types::{ChatAddr, UserId};
use tokio::sync::{mpsc, Notify};

use crate::Bridge;

/// Messages waiting for the push decision; past it, pushes are skipped (and counted), never
/// the messages themselves.
const CANDIDATES: usize = 10_000;
/// Jobs sent at once.
const SENDING: usize = 16;
/// Longest notification text when previews are on.
const PREVIEW_CHARS: usize = 120;

/// A committed message and who might need a push for it.
struct Candidate {
    message: Arc<StoredMessage>,
    recipients: Vec<UserId>,
}

/// The push side of the bridge; present only when push is enabled.
pub(crate) struct Push {
    pusher: Pusher,
    wake: Notify,
    candidates: mpsc::Sender<Candidate>,
    inbox: std::sync::Mutex<Option<mpsc::Receiver<Candidate>>>,
}

impl Push {
    pub(crate) fn new(pusher: Pusher) -> Push {
        let (tx, rx) = mpsc::channel(CANDIDATES);
        Push {
            pusher,
            wake: Notify::new(),
            candidates: tx,
            inbox: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// Whether this server sends notifications through `platform`'s provider.
    pub(crate) fn serves(&self, platform: PushPlatform) -> bool {
        self.pusher.serves(platform)
    }
}

fn count(platform: PushPlatform, class: &'static str) {
    metrics::counter!("natter_push_total", "provider" => platform.as_str(), "class" => class)
        .increment(1);
}

impl Bridge {
    /// Starts the push tasks (no-op when push is off). Call once, after start-up.
    pub fn start_push(self: &Arc<Self>) {
        let Some(push) = &self.push else { return };
        let Some(rx) = push.inbox.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        tokio::spawn(self.clone().decide(rx));
        tokio::spawn(self.clone().send_jobs());
    }

    /// Hands a committed message to the push decision (never waits).
    pub(crate) fn push_candidate(&self, message: &StoredMessage, readers: &[UserId]) {
        let Some(push) = &self.push else { return };
        if message.content.kind == "system" {
            return;
        }
        let recipients: Vec<UserId> = readers
            .iter()
            .filter(|u| **u != message.from)
            .cloned()
            .collect();
        if recipients.is_empty() {
            return;
        }
        let c = Candidate {
            message: Arc::new(message.clone()),
            recipients,
        };
        if push.candidates.try_send(c).is_err() {
            metrics::counter!("natter_push_skipped_total").increment(1);
            tracing::warn!("push queue full: a message's notifications were skipped");
        }
    }

    async fn decide(self: Arc<Self>, mut rx: mpsc::Receiver<Candidate>) {
        let grace = Duration::from_secs(self.config.push.grace_secs);
        while let Some(c) = rx.recv().await {
            for user in &c.recipients {
                let tokens = match self.store.push_tokens(user).await {
                    Ok(t) if !t.is_empty() => t,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "push tokens unreadable; no push");
                        continue;
                    }
                };
                // Unknown presence (Redis down) counts as offline: better a push too many.
                let online = self.presence.seen(user).await.is_ok_and(|s| s.online);
                if !online || grace.is_zero() {
                    self.enqueue(user, &c.message, tokens).await;
                    continue;
                }
                let (me, user, message) = (self.clone(), user.clone(), c.message.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    let got = me.store.receipt(&message.chat, message.id, &user).await;
                    if matches!(got, Ok(Some(_))) {
                        return;
                    }
                    me.enqueue(&user, &message, tokens).await;
                });
            }
        }
    }

    /// Makes (or collapses into) one job per token of `user` for `m`.
    async fn enqueue(&self, user: &UserId, m: &StoredMessage, tokens: Vec<PushToken>) {
        let Some(push) = &self.push else { return };
        let badge = match self.store.chats(user).await {
            Ok(chats) => chats.iter().map(|c| c.unread).sum(),
            Err(_) => 0,
        };
        let addr = m.chat.addr_for(user);
        let title = match &addr {
            Some(ChatAddr::Group(g)) => match self.groups.get(g).await {
                Ok(Some(g)) => format!("{} in {}", m.from, g.name),
                _ => m.from.to_string(),
            },
            _ => m.from.to_string(),
        };
        let body = if self.config.push.preview && !m.content.body.is_empty() {
            m.content.body.chars().take(PREVIEW_CHARS).collect()
        } else {
            "New message".to_owned()
        };
        let jobs: Vec<PushJob> = tokens
            .into_iter()
            .filter(|t| push.pusher.serves(t.platform))
            .map(|t| PushJob {
                user: user.clone(),
                device: t.device,
                collapse: m.chat.as_str().to_owned(),
                platform: t.platform,
                token: t.token,
                title: title.clone(),
                body: body.clone(),
                badge,
                chat: addr.as_ref().map(ToString::to_string).unwrap_or_default(),
                msg: m.id,
                attempts: 0,
                due_ms: 0,
                version: 0,
            })
            .collect();
        if let Err(e) = self.store.push_enqueue(jobs).await {
            tracing::warn!(error = %e, user = %user, "push job not stored; no push");
            return;
        }
        push.wake.notify_one();
    }

    async fn send_jobs(self: Arc<Self>) {
        let Some(push) = &self.push else { return };
        loop {
            // Woken by a new job, or every second for retries that came due.
            let _ = tokio::time::timeout(Duration::from_secs(1), push.wake.notified()).await;
            let due = match self.store.push_due(now_ms(), SENDING).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "push queue unreadable");
                    continue;
                }
            };
            let full = due.len() == SENDING;
            let mut sending = tokio::task::JoinSet::new();
            for job in due {
                let me = self.clone();
                sending.spawn(async move { me.send_one(job).await });
            }
            while sending.join_next().await.is_some() {}
            if full {
                // More may be due: go on without waiting.
                push.wake.notify_one();
            }
        }
    }

    async fn send_one(&self, job: PushJob) {
        let Some(push) = &self.push else { return };
        let n = Notification {
            token: job.token.clone(),
            title: job.title.clone(),
            body: job.body.clone(),
            badge: job.badge,
            collapse: job.collapse.clone(),
            chat: job.chat.clone(),
            msg: job.msg.to_string(),
        };
        let outcome = push.pusher.send(job.platform, &n).await;
        count(job.platform, outcome.class());
        let p = &self.config.push;
        let settled = match &outcome {
            Outcome::Sent => self.store.push_settle(&job, None).await,
            Outcome::Retry { after, reason } => {
                let attempts = job.attempts + 1;
                if attempts >= p.max_attempts {
                    count(job.platform, "gave_up");
                    tracing::warn!(user = %job.user, device = %job.device, reason, attempts,
                        "push dropped after its last attempt");
                    self.store.push_settle(&job, None).await
                } else {
                    let wait = backoff(
                        job.attempts,
                        Duration::from_millis(p.retry_base_ms),
                        Duration::from_secs(p.retry_max_secs),
                        *after,
                    );
                    tracing::info!(user = %job.user, device = %job.device, reason,
                        retry_in_ms = wait.as_millis() as u64, "push will be retried");
                    let due = now_ms() + wait.as_millis() as u64;
                    self.store.push_settle(&job, Some((attempts, due))).await
                }
            }
            Outcome::DeadToken(reason) => {
                tracing::info!(user = %job.user, device = %job.device, reason,
                    "push token is dead; forgotten");
                if let Err(e) = self.store.push_forget(job.platform, &job.token).await {
                    tracing::warn!(error = %e, "dead push token not forgotten");
                }
                self.store.push_settle(&job, None).await
            }
            Outcome::Rejected(reason) => {
                tracing::warn!(user = %job.user, device = %job.device, reason,
                    "push refused by the provider; dropped");
                self.store.push_settle(&job, None).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, "push job not settled; it may be sent again");
        }
    }
}
