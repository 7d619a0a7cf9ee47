//! Presence: a user is online while any of their devices is connected, offline (with
//! `last_seen`) once the last one goes, however it went.
//!
//! Two backends behind [`PresenceBackend`]: in-process (one node) and Redis (many nodes), where
//! each device is a member of the user's sorted set scored by its expiry, refreshed while the
//! device stays connected; the devices of a node that crashed expire on their own. Takeovers
//! (the same client id connecting again) are counted in `devices`, before any backend
//! sees them, so a takeover never flashes a user offline. If the backend fails, presence answers "unknown" and
//! messaging goes on; the refresh loop restores the backend's view when it returns.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use natter_types::{DeviceId, UserId};

use natter_types::clock::now_ms;

/// What a backend knows of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Any device connected.
    pub online: bool,
    /// When the last device went (or now, when online); `None` if never seen.
    pub last_seen: Option<u64>,
}

/// A presence backend that could not answer.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// Redis refused, failed, or the URL is not one.
    #[error("presence backend unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    /// No connection to Redis within the bound.
    #[error("presence backend unavailable: connecting to Redis timed out")]
    ConnectTimeout,
    /// Redis did not answer a call within the bound.
    #[error("presence backend unavailable: Redis did not answer in time")]
    Timeout,
}

/// Where presence is kept.
#[async_trait]
pub trait PresenceBackend: Send + Sync {
    /// A device came online; `true` if the user was offline before.
    async fn device_up(&self, user: &UserId, device: &DeviceId) -> Result<bool, PresenceError>;
    /// A device went away at `now_ms`; `true` if that was the user's last device.
    async fn device_down(
        &self,
        user: &UserId,
        device: &DeviceId,
        now_ms: u64,
    ) -> Result<bool, PresenceError>;
    /// The user's presence.
    async fn seen(&self, user: &UserId) -> Result<Seen, PresenceError>;
    /// Re-asserts the devices connected to this node (Redis: pushes their expiry forward).
    async fn refresh(&self, devices: &[(UserId, DeviceId)]) -> Result<(), PresenceError>;
    /// Whether the backend answers (for `/readyz`).
    async fn ready(&self) -> Result<(), PresenceError> {
        Ok(())
    }
}

/// One node's presence, in memory.
#[derive(Default)]
pub struct MemoryPresence {
    users: Mutex<HashMap<UserId, (usize, Option<u64>)>>,
}

#[async_trait]
impl PresenceBackend for MemoryPresence {
    async fn device_up(&self, user: &UserId, _device: &DeviceId) -> Result<bool, PresenceError> {
        let mut m = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(user.clone()).or_insert((0, None));
        e.0 += 1;
        Ok(e.0 == 1)
    }

    async fn device_down(
        &self,
        user: &UserId,
        _device: &DeviceId,
        now: u64,
    ) -> Result<bool, PresenceError> {
        let mut m = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(user.clone()).or_insert((0, None));
        e.0 = e.0.saturating_sub(1);
        if e.0 == 0 {
            e.1 = Some(now);
            return Ok(true);
        }
        Ok(false)
    }

    async fn seen(&self, user: &UserId) -> Result<Seen, PresenceError> {
        let m = self.users.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match m.get(user) {
            Some((n, _)) if *n > 0 => Seen {
                online: true,
                last_seen: Some(now_ms()),
            },
            Some((_, last)) => Seen {
                online: false,
                last_seen: *last,
            },
            None => Seen {
                online: false,
                last_seen: None,
            },
        })
    }

    async fn refresh(&self, _devices: &[(UserId, DeviceId)]) -> Result<(), PresenceError> {
        Ok(())
    }
}

/// Presence in Redis, shared by every node.
pub struct RedisPresence {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
    ttl: Duration,
    node: String,
}

/// Every Redis call gives up after this long: presence must never hold up a connection.
const REDIS_TIMEOUT: Duration = Duration::from_millis(1500);

impl RedisPresence {
    /// A backend on `url` (`redis://host:port/db`); devices expire `ttl` after their last
    /// refresh. Connects lazily, so natter starts even while Redis is down.
    pub fn new(url: &str, ttl: Duration) -> Result<RedisPresence, PresenceError> {
        Ok(RedisPresence {
            client: redis::Client::open(url)?,
            conn: tokio::sync::Mutex::new(None),
            ttl,
            node: format!("{:016x}", rand::random::<u64>()),
        })
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager, PresenceError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1);
        let c = tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            self.client.get_connection_manager_with_config(cfg),
        )
        .await
        .map_err(|_| PresenceError::ConnectTimeout)??;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, PresenceError> {
        let mut c = self.conn().await?;
        tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async(&mut c))
            .await
            .map_err(|_| PresenceError::Timeout)?
            .map_err(PresenceError::from)
    }

    fn key(user: &UserId) -> String {
        format!("natter:online:{user}")
    }

    fn member(&self, device: &DeviceId) -> String {
        format!("{}/{device}", self.node)
    }
}

#[async_trait]
impl PresenceBackend for RedisPresence {
    async fn device_up(&self, user: &UserId, device: &DeviceId) -> Result<bool, PresenceError> {
        let now = now_ms();
        let key = Self::key(user);
        let mut p = redis::pipe();
        p.atomic()
            .zrembyscore(&key, "-inf", now)
            .ignore()
            .zcard(&key)
            .zadd(&key, self.member(device), now + self.ttl.as_millis() as u64)
            .ignore()
            .pexpire(&key, self.ttl.as_millis() as i64)
            .ignore();
        let (before,): (u64,) = self.run(&p).await?;
        Ok(before == 0)
    }

    async fn device_down(
        &self,
        user: &UserId,
        device: &DeviceId,
        now: u64,
    ) -> Result<bool, PresenceError> {
        let key = Self::key(user);
        let mut p = redis::pipe();
        p.atomic()
            .zrem(&key, self.member(device))
            .ignore()
            .zrembyscore(&key, "-inf", now)
            .ignore()
            .zcard(&key);
        let (left,): (u64,) = self.run(&p).await?;
        if left == 0 {
            let mut p = redis::pipe();
            p.set(format!("natter:seen:{user}"), now).ignore();
            self.run::<()>(&p).await?;
        }
        Ok(left == 0)
    }

    async fn seen(&self, user: &UserId) -> Result<Seen, PresenceError> {
        let now = now_ms();
        let key = Self::key(user);
        let mut p = redis::pipe();
        p.zrembyscore(&key, "-inf", now)
            .ignore()
            .zcard(&key)
            .get(format!("natter:seen:{user}"));
        let (n, last): (u64, Option<u64>) = self.run(&p).await?;
        Ok(if n > 0 {
            Seen {
                online: true,
                last_seen: Some(now),
            }
        } else {
            Seen {
                online: false,
                last_seen: last,
            }
        })
    }

    async fn refresh(&self, devices: &[(UserId, DeviceId)]) -> Result<(), PresenceError> {
        if devices.is_empty() {
            return Ok(());
        }
        let expiry = now_ms() + self.ttl.as_millis() as u64;
        let mut p = redis::pipe();
        for (u, d) in devices {
            let key = Self::key(u);
            p.zadd(&key, self.member(d), expiry)
                .ignore()
                .pexpire(&key, self.ttl.as_millis() as i64)
                .ignore();
        }
        self.run::<()>(&p).await
    }

    async fn ready(&self) -> Result<(), PresenceError> {
        let mut p = redis::pipe();
        p.cmd("PING");
        self.run::<(String,)>(&p).await.map(|_| ())
    }
}
