//! Who may change a user's inbox: this process, one change at a time.
//!
//! A user's inbox seq must be gap-free and each seq given once, and the running counts of their
//! chat logs and their read pointers are read-modify-write. Cassandra has no transactions, so
//! natter gives every user one *owner* that does all of this, in order, and remembers the last
//! seq and each chat's newest log entry so that a send reads nothing per reader; with one
//! natter node, the owner of every user is this process and a per-user async lock orders the
//! writes.
//!
//! How it extends to several nodes (nothing here blocks it): the owner of a user is the node the
//! routing layer (Redis, issue "beyond one machine") maps the user to, e.g. by rendezvous hashing
//! over live nodes; other nodes forward appends, reads-up-to and receipts for that user to it.
//! A node taking a user over reads `inbox_heads` (written in the same batch as each inbox row)
//! and resumes from there; to fence a node that lost ownership but still writes, the head update
//! becomes a lightweight transaction (`UPDATE inbox_heads SET seq = ? WHERE uid = ? IF seq = ?`)
//! whose failure makes the old owner drop its cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use natter_types::UserId;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The newest entry of a user's log of one chat: its seq and the running count of messages
/// from others there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatHead {
    /// The user's inbox seq of the chat's newest message.
    pub seq: u64,
    /// Messages from others the user has had in the chat up to it.
    pub from_others: u64,
}

/// What the owner remembers of a user between writes.
#[derive(Debug, Default)]
pub struct UserHead {
    /// The last seq given out, once read from `inbox_heads`; `None` until then.
    pub seq: Option<u64>,
    /// Each chat's newest log entry, once read from `chat_log` or written; `Some(None)` where
    /// the log is known to be empty. A chat missing here is read again.
    chats: HashMap<String, Option<ChatHead>>,
}

/// Past this many chats remembered for one user, that user's chat memory starts again empty.
const CHATS_PER_USER: usize = 4096;

impl UserHead {
    /// The remembered newest log entry of `chat`: `None` if not remembered, `Some(None)` if
    /// the log is known to be empty.
    pub fn chat(&self, chat: &str) -> Option<Option<ChatHead>> {
        self.chats.get(chat).copied()
    }

    /// Remembers the newest log entry of `chat` (`None`: the log is empty).
    pub fn set_chat(&mut self, chat: &str, head: Option<ChatHead>) {
        if self.chats.len() >= CHATS_PER_USER && !self.chats.contains_key(chat) {
            self.chats.clear();
        }
        self.chats.insert(chat.to_owned(), head);
    }

    /// Forgets `chat` (a write to its log may or may not have been applied).
    pub fn forget_chat(&mut self, chat: &str) {
        self.chats.remove(chat);
    }

    /// Forgets every chat (the user's logs were dropped).
    pub fn forget_chats(&mut self) {
        self.chats.clear();
    }
}

/// The per-user locks. Entries nobody holds are dropped once the map grows, so memory follows
/// the users active now, not every user ever seen.
#[derive(Default)]
pub struct Owners {
    users: StdMutex<HashMap<UserId, Arc<Mutex<UserHead>>>>,
}

/// Past this many users in the map, unused entries are dropped (their heads are read again).
const PRUNE_AT: usize = 100_000;

impl Owners {
    /// Takes the locks of `users` (duplicates ignored) in a fixed order, so that two writes
    /// that share readers can never wait for each other.
    pub async fn lock(&self, users: &[&UserId]) -> Vec<(UserId, OwnedMutexGuard<UserHead>)> {
        let mut sorted: Vec<&UserId> = users.to_vec();
        sorted.sort();
        sorted.dedup();
        let cells: Vec<(UserId, Arc<Mutex<UserHead>>)> = {
            let mut map = self.users.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() > PRUNE_AT {
                // Only this map holds an entry with one reference: no one is using it.
                map.retain(|_, cell| Arc::strong_count(cell) > 1);
            }
            sorted
                .into_iter()
                .map(|u| (u.clone(), map.entry(u.clone()).or_default().clone()))
                .collect()
        };
        let mut out = Vec::with_capacity(cells.len());
        for (u, cell) in cells {
            out.push((u, cell.lock_owned().await));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn u(s: &str) -> UserId {
        UserId::new(s).unwrap()
    }

    #[tokio::test]
    async fn writes_sharing_a_reader_wait_for_each_other_and_never_deadlock() {
        let owners = Arc::new(Owners::default());
        let (a, b) = (u("a"), u("b"));
        let first = owners.lock(&[&b, &a, &a]).await;
        assert_eq!(first.len(), 2, "duplicates are locked once");
        let o = owners.clone();
        let (a2, b2) = (a.clone(), b.clone());
        let second = tokio::spawn(async move { o.lock(&[&a2, &b2]).await.len() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !second.is_finished(),
            "the second write waits for the first"
        );
        drop(first);
        let n = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("no deadlock")
            .unwrap();
        assert_eq!(n, 2);
    }
}
