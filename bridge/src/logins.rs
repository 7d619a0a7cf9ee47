//! Failed-login throttling, in the manner of ejabberd's `mod_fail2ban`, without locking a user
//! out of her own devices.
//!
//! Two allowances of failures, each a token bucket that refills evenly over
//! `auth.failure_window_secs`: one per source address (`auth.max_failures_per_ip`), one per
//! account (`auth.max_failures_per_account`). While either is spent, a password attempt is
//! refused without being checked, so a flood of wrong passwords costs natter no argon2 work and
//! real logins are not starved. Exceptions, so an attacker cannot lock a user out: an address
//! the account logged in from successfully before (remembered, bounded) skips the account's
//! allowance, and tokens are always checked (they are cheap and only a correct password gets
//! one). Only failures take from the allowances.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use natter_config::AuthConfig;
use natter_types::UserId;

use crate::limits::Rate;

/// Most (account, address) pairs remembered as known; past it the oldest half is forgotten.
const MAX_KNOWN: usize = 100_000;
/// How long a successful login makes its address known to the account.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 86_400);

/// The failure allowances and the known addresses.
pub(crate) struct Logins {
    throttle_loopback: bool,
    per_ip: Rate<IpAddr>,
    per_account: Rate<UserId>,
    known: Mutex<HashMap<(UserId, IpAddr), Instant>>,
}

/// Why a password attempt is refused unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Throttled {
    /// Too many failures from this address.
    Address,
    /// Too many failures for this account, from an address it never logged in from.
    Account,
}

impl Logins {
    pub(crate) fn new(cfg: &AuthConfig) -> Logins {
        let window = cfg.failure_window_secs.max(1) as f64;
        let rate = |n: u32| (f64::from(n) / window, n);
        let (ip_rate, ip_burst) = rate(cfg.max_failures_per_ip);
        let (acct_rate, acct_burst) = rate(cfg.max_failures_per_account);
        Logins {
            throttle_loopback: cfg.throttle_loopback,
            per_ip: Rate::new(ip_rate, ip_burst),
            per_account: Rate::new(acct_rate, acct_burst),
            known: Mutex::new(HashMap::new()),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<(UserId, IpAddr), Instant>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The address to count failures against, if any.
    fn counted(&self, ip: Option<IpAddr>) -> Option<IpAddr> {
        ip.filter(|a| self.throttle_loopback || !a.is_loopback())
    }

    /// Whether a password attempt for `user` from `ip` may be checked now.
    pub(crate) fn check(&self, ip: Option<IpAddr>, user: &UserId) -> Result<(), Throttled> {
        if let Some(counted) = self.counted(ip) {
            if !self.per_ip.has_token(&counted) {
                return Err(Throttled::Address);
            }
        }
        if let Some(ip) = ip {
            let known = self
                .known()
                .get(&(user.clone(), ip))
                .is_some_and(|at| at.elapsed() < KNOWN_FOR);
            if known {
                return Ok(());
            }
        }
        if !self.per_account.has_token(user) {
            return Err(Throttled::Account);
        }
        Ok(())
    }

    /// A login failed: it takes from the address's allowance (if counted) and, for a password
    /// attempt, from the account's.
    pub(crate) fn failed(&self, ip: Option<IpAddr>, user: Option<&UserId>) {
        if let Some(ip) = self.counted(ip) {
            self.per_ip.allow(&ip);
        }
        if let Some(user) = user {
            self.per_account.allow(user);
        }
    }

    /// A login succeeded: its address is known to the account from now on.
    pub(crate) fn succeeded(&self, ip: Option<IpAddr>, user: &UserId) {
        let Some(ip) = ip else { return };
        let mut known = self.known();
        if known.len() >= MAX_KNOWN {
            let mut ages: Vec<Instant> = known.values().copied().collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            known.retain(|_, at| *at > cut);
        }
        known.insert((user.clone(), ip), Instant::now());
    }

    /// Forgets what is known of `user` (a removed account or a new password).
    pub(crate) fn forget(&self, user: &UserId) {
        self.known().retain(|(u, _), _| u != user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logins(per_ip: u32, per_account: u32) -> Logins {
        Logins::new(&AuthConfig {
            max_failures_per_ip: per_ip,
            max_failures_per_account: per_account,
            failure_window_secs: 3600,
            throttle_loopback: true,
            ..AuthConfig::default()
        })
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_and_others_are_not() {
        let l = logins(3, 100);
        let bad: IpAddr = "10.0.0.1".parse().unwrap();
        let good: IpAddr = "10.0.0.2".parse().unwrap();
        let alice = UserId::new("alice").unwrap();
        for _ in 0..3 {
            assert_eq!(l.check(Some(bad), &alice), Ok(()));
            l.failed(Some(bad), Some(&alice));
        }
        assert_eq!(l.check(Some(bad), &alice), Err(Throttled::Address));
        assert_eq!(l.check(Some(good), &alice), Ok(()));
    }

    #[test]
    fn an_attacked_account_still_logs_in_from_where_it_logged_in_before() {
        let l = logins(100, 2);
        let home: IpAddr = "10.0.0.1".parse().unwrap();
        let attacker: IpAddr = "10.0.0.9".parse().unwrap();
        let bob = UserId::new("bob").unwrap();
        l.succeeded(Some(home), &bob);
        l.failed(Some(attacker), Some(&bob));
        l.failed(Some(attacker), Some(&bob));
        assert_eq!(l.check(Some(attacker), &bob), Err(Throttled::Account));
        assert_eq!(l.check(Some(home), &bob), Ok(()));
        l.forget(&bob);
        assert_eq!(l.check(Some(home), &bob), Err(Throttled::Account));
    }
}
