//! A bounded cache of user records, for a store that is the only writer of its users.
//!
//! Every send checks that its one-to-one peer exists and every CONNECT reads the user; from
//! the embedded store each is a read on a blocking thread, and those thread hand-offs were a
//! third of the tokio side's time under load. The embedded store owns its directory (fjall
//! locks it), so it sees every change and can cache exactly; a shared backend (Cassandra) must not
//! use this, since other nodes change users behind its back.

use std::collections::HashMap;
use std::sync::Mutex;

use natter_types::UserId;

use crate::UserRecord;

/// Users kept; past it the cache starts again empty (cheaper than tracking recency, and a
/// refill costs one read per user).
const MAX_USERS: usize = 100_000;

/// Records, and absences, of users read lately.
#[derive(Default)]
pub(crate) struct UserCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<UserId, Option<UserRecord>>,
    /// Moves on every change, so a read that raced a change never caches what it read.
    generation: u64,
}

impl UserCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached record (`Some(None)`: known not to exist), and the generation to hand back
    /// to [`UserCache::fill`] after a read when nothing was cached.
    pub(crate) fn get(&self, user: &UserId) -> (Option<Option<UserRecord>>, u64) {
        let inner = self.lock();
        (inner.users.get(user).cloned(), inner.generation)
    }

    /// Caches what a read begun at `generation` found, unless a change came in between.
    pub(crate) fn fill(&self, generation: u64, user: UserId, record: Option<UserRecord>) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.users.len() >= MAX_USERS {
            inner.users.clear();
        }
        inner.users.insert(user, record);
    }

    /// Forgets `user`; call after a change to it is committed (or failed).
    pub(crate) fn forget(&self, user: &UserId) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.users.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> UserRecord {
        UserRecord {
            id: UserId::new(name).expect("valid id"),
            password_hash: "h".into(),
            created_ms: 1,
        }
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_cached() {
        let c = UserCache::default();
        let alice = UserId::new("alice").expect("valid id");
        let (cached, g) = c.get(&alice);
        assert!(cached.is_none());
        // The user is created (and committed) while the read was under way.
        c.forget(&alice);
        c.fill(g, alice.clone(), None);
        assert!(
            c.get(&alice).0.is_none(),
            "the stale absence must not be cached"
        );
        let (_, g) = c.get(&alice);
        c.fill(g, alice.clone(), Some(rec("alice")));
        assert_eq!(c.get(&alice).0, Some(Some(rec("alice"))));
        c.forget(&alice);
        assert!(c.get(&alice).0.is_none());
    }
}
