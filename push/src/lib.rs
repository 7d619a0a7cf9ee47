//! Push notifications for users with no device online: FCM HTTP v1 and APNs clients, a durable
//! push queue, retries and dead-token cleanup.
//!
//! Not built yet (issue 5): this crate holds the place in the workspace so the dependency
//! direction (`bridge` → `push` → `config`) is fixed from the start. It must never learn about
//! MQTT or chat rules; it sends what the bridge asks.
