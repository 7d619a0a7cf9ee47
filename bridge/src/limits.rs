//! Token buckets: the per-user message and request rates, the per-device typing rate, and the
//! failed-login allowances per address and per account ([`crate::logins`]).
//!
//! A key over its rate is refused only for itself (its own publishes, or its own login attempts);
//! the buckets live in memory on the node that serves the user, and a bucket that has refilled
//! completely is the same as no bucket, so the map forgets those when it grows.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// A token bucket: `burst` tokens at most, refilled at `per_sec`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(burst: f64) -> Bucket {
        Bucket {
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Refills for the time since the last call, then takes one token if there is one.
    pub(crate) fn take(&mut self, per_sec: f64, burst: f64) -> bool {
        self.take_n(1.0, per_sec, burst)
    }

    /// Refills, then takes `n` tokens if there are that many (a costly request takes more
    /// than one; `n` above `burst` needs a full bucket).
    pub(crate) fn take_n(&mut self, n: f64, per_sec: f64, burst: f64) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * per_sec;
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        let n = n.min(burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Whether a token could be taken now, without taking it.
    fn has_token(&self, per_sec: f64, burst: f64) -> bool {
        (self.tokens + self.at.elapsed().as_secs_f64() * per_sec).min(burst) >= 1.0
    }

    /// Whether the bucket would be full by now (its owner has been quiet long enough).
    fn refilled(&self, per_sec: f64, burst: f64) -> bool {
        self.tokens + self.at.elapsed().as_secs_f64() * per_sec >= burst
    }
}

/// Above this many buckets, the full ones are dropped before a new one is added.
const PRUNE_AT: usize = 50_000;

/// One bucket per key (a user, or an address for logins), all with the same rate.
pub(crate) struct Rate<K> {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    map: HashMap<K, Bucket>,
    /// The size at which the next prune runs: after a prune that freed little (many users
    /// active at once), the next waits until the map has doubled, so a busy node does not scan
    /// every bucket for every new user.
    prune_at: usize,
}

impl<K: Eq + Hash + Clone> Rate<K> {
    /// `per_sec` sustained, `burst` at once.
    pub(crate) fn new(per_sec: f64, burst: u32) -> Rate<K> {
        Rate {
            per_sec,
            burst: f64::from(burst),
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                prune_at: PRUNE_AT,
            }),
        }
    }

    /// Takes one token from `key`'s bucket; `false` when `key` is over the rate.
    pub(crate) fn allow(&self, key: &K) -> bool {
        self.allow_n(key, 1.0)
    }

    /// Takes `n` tokens from `key`'s bucket (work, not requests, is what a rate should count);
    /// `false` when `key` has not that many.
    pub(crate) fn allow_n(&self, key: &K, n: f64) -> bool {
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = &mut *guard;
        if let Some(bucket) = b.map.get_mut(key) {
            return bucket.take_n(n, self.per_sec, self.burst);
        }
        if b.map.len() >= b.prune_at {
            b.map.retain(|_, x| !x.refilled(self.per_sec, self.burst));
            b.prune_at = (b.map.len() * 2).max(PRUNE_AT);
        }
        let mut bucket = Bucket::full(self.burst);
        let ok = bucket.take_n(n, self.per_sec, self.burst);
        b.map.insert(key.clone(), bucket);
        ok
    }

    /// Whether `key` could take a token now, without taking it.
    pub(crate) fn has_token(&self, key: &K) -> bool {
        let guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .map
            .get(key)
            .is_none_or(|b| b.has_token(self.per_sec, self.burst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_others_are_untouched() {
        let r: Rate<&str> = Rate::new(1.0, 3);
        assert!((0..3).all(|_| r.allow(&"alice")));
        assert!(!r.allow(&"alice"));
        assert!(r.allow(&"bob"));
    }

    #[test]
    fn pruning_forgets_only_refilled_buckets_and_backs_off_when_all_are_busy() {
        let r: Rate<usize> = Rate::new(0.001, 1);
        for k in 0..PRUNE_AT {
            assert!(r.allow(&k));
        }
        // Every bucket is empty (its user just sent), so pruning frees nothing …
        assert!(r.allow(&PRUNE_AT));
        assert!(!r.allow(&0), "an active user's bucket was forgotten");
        // … and the next prune waits until the map has doubled.
        assert_eq!(r.buckets.lock().unwrap().prune_at, 2 * PRUNE_AT);
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let r: Rate<&str> = Rate::new(50.0, 1);
        assert!(r.allow(&"alice"));
        assert!(!r.allow(&"alice"));
        std::thread::sleep(std::time::Duration::from_millis(40));
        assert!(r.allow(&"alice"));
    }
}
