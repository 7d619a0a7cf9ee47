//! How many sessions each user holds, connected or kept offline, for the per-user device limit
//! (`limits.max_connections_per_user`).
//!
//! rmqtt keeps sessions by client id; this remembers which client ids belong to which user.
//! A client id is added when its CONNECT is accepted (before rmqtt has made the session, so two
//! CONNECTs at once cannot both take the last place) and forgotten a second after rmqtt ends its
//! session ([`Sessions::ended`]), unless a newer CONNECT took it. As a fallback, whenever a user
//! is at the limit, ids whose session rmqtt no longer has are dropped once their CONNECT has had
//! time to finish. So the count is never below the truth, and never above it for long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Client ids per user, each with when it was last admitted.
pub(crate) struct Sessions {
    max_per_user: usize,
    /// How long an admitted client id is kept without a session (its CONNECT still running).
    grace: Duration,
    users: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

impl Sessions {
    pub(crate) fn new(max_per_user: usize, grace: Duration) -> Sessions {
        Sessions {
            max_per_user,
            grace,
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Admits `client_id` of `user` unless that would give the user more than the limit of
    /// sessions. `exists` tells whether rmqtt still holds a session for a client id. A client
    /// id that has a session already (a reconnect, a takeover) is always admitted.
    pub(crate) fn admit(&self, user: &str, client_id: &str, exists: impl Fn(&str) -> bool) -> bool {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let ids = users.entry(user.to_owned()).or_default();
        let now = Instant::now();
        if ids.contains_key(client_id) || exists(client_id) {
            ids.insert(client_id.to_owned(), now);
            return true;
        }
        if ids.len() >= self.max_per_user {
            ids.retain(|id, at| now.duration_since(*at) < self.grace || exists(id));
        }
        if ids.len() >= self.max_per_user {
            return false;
        }
        ids.insert(client_id.to_owned(), now);
        true
    }

    /// Forgets `client_id` once rmqtt has ended the session it had at `at` (`exists` says
    /// whether a newer one took its place). An id admitted again after `at` is a new CONNECT
    /// still being set up: it stays.
    pub(crate) fn ended(
        &self,
        user: &str,
        client_id: &str,
        at: Instant,
        exists: impl Fn(&str) -> bool,
    ) {
        if exists(client_id) {
            return;
        }
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ids) = users.get_mut(user) {
            if ids.get(client_id).is_some_and(|admitted| *admitted <= at) {
                ids.remove(client_id);
            }
            if ids.is_empty() {
                users.remove(user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_at_the_limit_gets_no_new_device_but_her_devices_come_back() {
        let s = Sessions::new(2, Duration::ZERO);
        let live = |id: &str| id == "bob:a" || id == "bob:b";
        assert!(s.admit("bob", "bob:a", |_| false));
        assert!(s.admit("bob", "bob:b", |_| false));
        assert!(!s.admit("bob", "bob:c", live));
        assert!(s.admit("bob", "bob:a", live), "a known device reconnects");
        assert!(s.admit("alice", "alice:a", live), "others are untouched");
        // bob:a is connecting again when its old session's end is seen: it stays counted.
        let gone = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(s.admit("bob", "bob:a", |_| false));
        s.ended("bob", "bob:a", gone, |_| false);
        s.ended("bob", "bob:b", Instant::now(), |_| false);
        assert!(s.admit("bob", "bob:c", |id| id == "bob:a"));
        let live = |id: &str| id == "bob:a" || id == "bob:c";
        assert!(
            !s.admit("bob", "bob:d", live),
            "bob:a and bob:c fill both places"
        );
    }

    #[test]
    fn ids_whose_session_is_gone_are_dropped_when_the_user_is_full() {
        let s = Sessions::new(1, Duration::ZERO);
        assert!(s.admit("bob", "bob:a", |_| false));
        // bob:a's session ended without the hook being seen: rmqtt no longer has it.
        assert!(s.admit("bob", "bob:b", |_| false));
        assert!(!s.admit("bob", "bob:c", |id| id == "bob:b"));
    }
}
