//! Devices: which are connected to this node (takeovers overlap, so connections are counted
//! per device), their typing allowance, and the presence transitions they cause: a user is
//! online from her first device's connection to her last one's end.
//!
//! The presence backends are in [`crate::presence`]; who may see whose presence is
//! [`crate::chats`]' business.

use std::collections::HashMap;

use natter_types::{clock::now_ms, Client, DeviceId, UserId};

use crate::limits::Bucket;
use crate::Bridge;

/// Typing indicators a device may send in a burst, and per second after it.
pub(crate) const TYPING_BURST: f64 = 5.0;
/// See [`TYPING_BURST`].
pub(crate) const TYPING_PER_SEC: f64 = 1.0;

/// Per-connection state: how many connections a device has (takeovers overlap), and its typing
/// allowance; and how many devices each user has connected.
#[derive(Default)]
pub(crate) struct Devices {
    map: std::sync::Mutex<DeviceMap>,
}

#[derive(Default)]
struct DeviceMap {
    devices: HashMap<(UserId, DeviceId), DeviceState>,
    per_user: HashMap<UserId, usize>,
}

struct DeviceState {
    connections: usize,
    typing: Bucket,
}

impl Devices {
    fn lock(&self) -> std::sync::MutexGuard<'_, DeviceMap> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a connection; `true` if it is the device's first.
    pub(crate) fn up(&self, c: &Client) -> bool {
        let mut m = self.lock();
        let e = m
            .devices
            .entry((c.user.clone(), c.device.clone()))
            .or_insert(DeviceState {
                connections: 0,
                typing: Bucket::full(TYPING_BURST),
            });
        e.connections += 1;
        let first = e.connections == 1;
        metrics::gauge!("natter_connections").increment(1.0);
        if first {
            let n = m.per_user.entry(c.user.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                metrics::gauge!("natter_online_users").increment(1.0);
            }
        }
        first
    }

    /// Drops a connection; `true` if it was the device's last.
    pub(crate) fn down(&self, c: &Client) -> bool {
        let mut m = self.lock();
        let key = (c.user.clone(), c.device.clone());
        let last = match m.devices.get_mut(&key) {
            Some(e) if e.connections > 1 => {
                e.connections -= 1;
                false
            }
            Some(_) => {
                m.devices.remove(&key);
                true
            }
            None => return false,
        };
        metrics::gauge!("natter_connections").decrement(1.0);
        if last {
            if let Some(n) = m.per_user.get_mut(&c.user) {
                *n -= 1;
                if *n == 0 {
                    m.per_user.remove(&c.user);
                    metrics::gauge!("natter_online_users").decrement(1.0);
                }
            }
        }
        last
    }

    /// Takes one typing token; `false` when the device is over its rate.
    pub(crate) fn allow_typing(&self, c: &Client) -> bool {
        let mut m = self.lock();
        match m.devices.get_mut(&(c.user.clone(), c.device.clone())) {
            Some(e) => e.typing.take(TYPING_PER_SEC, TYPING_BURST),
            None => false,
        }
    }

    /// How many devices are connected to this node.
    pub(crate) fn count(&self) -> usize {
        self.lock().devices.len()
    }

    /// Every device connected to this node.
    pub(crate) fn all(&self) -> Vec<(UserId, DeviceId)> {
        self.lock().devices.keys().cloned().collect()
    }
}

impl Bridge {
    /// A connection of `c` is up.
    pub(crate) async fn device_connected(&self, c: &Client) {
        if !self.devices.up(c) {
            return;
        }
        match self.presence.device_up(&c.user, &c.device).await {
            Ok(true) => self.outbox.presence(&c.user, true, now_ms()).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, user = %c.user, "presence not updated"),
        }
    }

    /// A connection of `c` ended.
    pub(crate) async fn device_disconnected(&self, c: &Client) {
        if !self.devices.down(c) {
            return;
        }
        let now = now_ms();
        match self.presence.device_down(&c.user, &c.device, now).await {
            Ok(true) => self.outbox.presence(&c.user, false, now).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, user = %c.user, "presence not updated"),
        }
    }

    /// Keeps this node's devices alive in the presence backend; run every `ttl / 3`.
    pub async fn refresh_presence(&self) {
        if let Err(e) = self.presence.refresh(&self.devices.all()).await {
            tracing::warn!(error = %e, "presence refresh failed");
        }
    }
}
