//! Token buckets: the per-user message and request rates, and the per-device typing rate.
//!
//! One user going over a rate is refused on their own publishes only; the buckets live in memory
//! on the node that serves the user, and a bucket that has refilled completely is the same as no
//! bucket, so the map forgets those when it grows.

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
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * per_sec;
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full by now (its owner has been quiet long enough).
    fn refilled(&self, per_sec: f64, burst: f64) -> bool {
        self.tokens + self.at.elapsed().as_secs_f64() * per_sec >= burst
    }
}

/// Above this many buckets, the full ones are dropped before a new one is added.
const PRUNE_AT: usize = 50_000;

/// One bucket per key (a user), all with the same rate.
pub(crate) struct Rate<K> {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> Rate<K> {
    /// `per_sec` sustained, `burst` at once.
    pub(crate) fn new(per_sec: f64, burst: u32) -> Rate<K> {
        Rate {
            per_sec,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `key`'s bucket; `false` when `key` is over the rate.
    pub(crate) fn allow(&self, key: &K) -> bool {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get_mut(key) {
            return b.take(self.per_sec, self.burst);
        }
        if map.len() >= PRUNE_AT {
            map.retain(|_, b| !b.refilled(self.per_sec, self.burst));
        }
        let mut b = Bucket::full(self.burst);
        let ok = b.take(self.per_sec, self.burst);
        map.insert(key.clone(), b);
        ok
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
    fn tokens_come_back_at_the_rate() {
        let r: Rate<&str> = Rate::new(50.0, 1);
        assert!(r.allow(&"alice"));
        assert!(!r.allow(&"alice"));
        std::thread::sleep(std::time::Duration::from_millis(40));
        assert!(r.allow(&"alice"));
    }
}
