//! natter's configuration: one TOML file, every key optional, every default the embedded
//! single-machine setup (`config/natter.toml` documents each key).
//!
//! This crate owns parsing and validation, so that a bad file stops start-up with an error naming
//! the key, the value and what was expected. It must never open sockets or files other than the
//! config file itself: checking that a port is free or a key file readable belongs to the code
//! that uses them, which names the key in its own error.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file named on the command line.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key has a value of the wrong shape.
    #[error("config {path}: key `{key}`: {message}")]
    Parse {
        /// The file named on the command line.
        path: String,
        /// The dotted key, e.g. `mqtt.tcp`.
        key: String,
        /// What was wrong, with the value and the expectation where the parser gives them.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("config key `{key}` = {value}: expected {expected}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// The offending value as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded store, keys and tokens live.
    pub data_dir: PathBuf,
    /// The MQTT listeners and their bounds.
    pub mqtt: MqttConfig,
    /// The HTTP API.
    pub http: HttpConfig,
    /// Passwords and tokens.
    pub auth: AuthConfig,
    /// The message store.
    pub store: StoreConfig,
    /// Chat limits.
    pub limits: LimitsConfig,
    /// Extra topic rights outside the chat namespaces, Mosquitto-style.
    pub acl: Vec<AclRule>,
    /// An optional listener for clients without credentials.
    pub anonymous: Option<AnonymousConfig>,
    /// Presence (online / last seen).
    pub presence: PresenceConfig,
    /// Logging.
    pub log: LogConfig,
    /// Push notifications for users with no device online.
    pub push: PushConfig,
    /// Uploaded files: where they live, what is accepted, how long they are kept.
    pub media: MediaConfig,
    /// Seconds `natter serve` takes at most, after SIGTERM or SIGINT, to finish the commits in
    /// flight, tell clients and exit.
    pub shutdown_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            mqtt: MqttConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            acl: Vec::new(),
            anonymous: None,
            presence: PresenceConfig::default(),
            log: LogConfig::default(),
            push: PushConfig::default(),
            media: MediaConfig::default(),
            shutdown_timeout_secs: 10,
        }
    }
}

/// MQTT listeners and per-connection bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// MQTT over TCP.
    #[serde(deserialize_with = "addr")]
    pub tcp: SocketAddr,
    /// MQTT over WebSocket (path `/mqtt`); absent or empty turns it off.
    #[serde(deserialize_with = "opt_addr")]
    pub ws: Option<SocketAddr>,
    /// Most connections accepted at once, per listener.
    pub max_connections: usize,
    /// Largest MQTT packet accepted, in bytes; a bigger one breaks MQTT and closes the connection.
    pub max_packet_size: u32,
    /// Smallest keepalive a client may ask for, in seconds (0 = any).
    pub min_keepalive: u16,
    /// Largest keepalive a client may ask for, in seconds.
    pub max_keepalive: u16,
    /// QoS 1/2 messages in flight to one client before the rest queue.
    pub max_inflight: u16,
    /// Messages queued for one offline persistent session; beyond it the oldest are dropped
    /// (the store still has them: `sync` recovers them).
    pub max_queue: usize,
    /// Seconds a connection may take to send CONNECT (from the first byte it may send).
    pub handshake_timeout_secs: u64,
    /// Longest MQTT 5 session expiry a client may ask for, in seconds; a longer one is cut to
    /// this. MQTT 3.1.1 persistent sessions (clean session off) expire after the smaller of this
    /// and 2 hours. The store keeps every message regardless: `sync` recovers what a session
    /// that expired would have held.
    pub max_session_expiry_secs: u64,
    /// Most retained topics kept for integrations (`[[acl]]` and `[anonymous]` topics).
    pub retained_max_topics: usize,
    /// Most retained bytes (payloads and topic names) kept for integrations, all topics together.
    pub retained_max_bytes: usize,
    /// Largest retained payload, in bytes; a larger retained publish is refused (`0x97`).
    pub retained_max_payload: usize,
    /// MQTT over TLS (and optionally secure WebSocket); absent turns TLS off.
    pub tls: Option<TlsConfig>,
}

/// TLS listeners. The certificate and key are read at start and again on SIGHUP; connections
/// already open keep the certificate they started with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// MQTT over TLS.
    #[serde(deserialize_with = "addr", default = "default_tls_listen")]
    pub listen: SocketAddr,
    /// Secure WebSocket (path `/mqtt`); absent or empty turns it off.
    #[serde(deserialize_with = "opt_addr", default)]
    pub wss: Option<SocketAddr>,
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

fn default_tls_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8883))
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            tcp: SocketAddr::from(([127, 0, 0, 1], 1883)),
            ws: Some(SocketAddr::from(([127, 0, 0, 1], 8083))),
            max_connections: 100_000,
            max_packet_size: 1024 * 1024,
            min_keepalive: 0,
            max_keepalive: 3600,
            max_inflight: 32,
            max_queue: 1000,
            handshake_timeout_secs: 10,
            max_session_expiry_secs: 86_400,
            retained_max_topics: 100_000,
            retained_max_bytes: 64 * 1024 * 1024,
            retained_max_payload: 64 * 1024,
            tls: None,
        }
    }
}

/// The HTTP API: tokens, admin, health.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where the HTTP API listens.
    #[serde(deserialize_with = "addr")]
    pub listen: SocketAddr,
    /// Bearer token for `/v1/admin/*`. Empty: one is made at start and written to
    /// `{data_dir}/admin.token`, where `natter user …` finds it.
    pub admin_token: String,
    /// Seconds a connection has to send a request's headers, counted from its first byte (or
    /// from the connection's start); a request body is not counted.
    pub header_timeout_secs: u64,
    /// Seconds a connection may move no bytes, between requests or during one, before it is
    /// closed.
    pub idle_timeout_secs: u64,
    /// HTTP connections open at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: String::new(),
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 1024,
        }
    }
}

/// Passwords and tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of tokens from `POST /v1/token`, in seconds.
    pub token_ttl_secs: u64,
    /// Key that signs natter's own tokens (HS256). Empty: `{data_dir}/token.key`, made at first
    /// start.
    pub token_key_file: String,
    /// Other issuers whose tokens are accepted as MQTT passwords.
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// Clock skew allowed when checking a token's `exp` and `nbf`, in seconds (at most 300).
    pub leeway_secs: u64,
    /// Failed logins (MQTT CONNECT or `POST /v1/token`) one source address may make in
    /// `failure_window_secs`; past it, password attempts from that address are refused without
    /// being checked until the window lets more through (tokens are still checked).
    pub max_failures_per_ip: u32,
    /// Failed password logins one account may take in `failure_window_secs`; past it, password
    /// attempts for that account are refused without being checked, except from addresses the
    /// account logged in from successfully before (so a user is not locked out of her own
    /// devices) and with tokens.
    pub max_failures_per_account: u32,
    /// The window of the two failure counts above, in seconds: the allowance refills evenly
    /// over it.
    pub failure_window_secs: u64,
    /// Whether loopback addresses count per address too. Off by default (as fail2ban's
    /// `ignoreip`): behind a reverse proxy on the same machine every client shares one loopback
    /// address, and one attacker would lock everyone out.
    pub throttle_loopback: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_secs: 24 * 3600,
            token_key_file: String::new(),
            trusted_issuers: Vec::new(),
            leeway_secs: 30,
            max_failures_per_ip: 20,
            max_failures_per_account: 10,
            failure_window_secs: 300,
            throttle_loopback: false,
        }
    }
}

/// An identity provider whose signed tokens natter accepts. The token's `sub` is the user id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The `iss` claim the token must carry.
    pub issuer: String,
    /// The signing algorithm.
    pub algorithm: IssuerAlgorithm,
    /// PEM public key of the issuer.
    pub public_key_file: PathBuf,
    /// The `aud` claim required, if any.
    #[serde(default)]
    pub audience: Option<String>,
}

/// Asymmetric algorithms accepted from trusted issuers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum IssuerAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

/// The message store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where the messages live.
    pub backend: StoreBackend,
    /// Most sends committed together in one transaction (embedded).
    pub max_batch: usize,
    /// Sends waiting for the writer (embedded) or in flight (cassandra) before new ones are
    /// refused (quota exceeded).
    pub max_queue: usize,
    /// Page cache of the embedded store, in MiB.
    pub cache_mb: usize,
    /// The Cassandra/ScyllaDB cluster, for `backend = "cassandra"`.
    pub cassandra: CassandraConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            max_batch: 512,
            max_queue: 16_384,
            cache_mb: 64,
            cassandra: CassandraConfig::default(),
        }
    }
}

/// `[store] backend`: where the messages live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// `embedded`: one redb file under `data_dir`.
    #[default]
    Embedded,
    /// `cassandra`: a Cassandra or ScyllaDB cluster, set up in `[store.cassandra]`.
    Cassandra,
}

/// `[store.cassandra]`: where the cluster is and how natter talks to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CassandraConfig {
    /// `host:port` of a few nodes; the driver learns the rest of the cluster from them.
    pub contact_points: Vec<String>,
    /// natter's keyspace; created with `replication` if missing.
    pub keyspace: String,
    /// How the keyspace is replicated, if natter creates it.
    pub replication_class: ReplicationClass,
    /// Copies of each row, for `SimpleStrategy`.
    pub replication_factor: u32,
    /// Copies per datacenter, for `NetworkTopologyStrategy`: `{ dc1 = 3, dc2 = 3 }`.
    pub datacenters: BTreeMap<String, u32>,
    /// The datacenter natter runs in: requests go to its nodes first. "" means any.
    pub local_datacenter: String,
    /// Consistency of reads and writes.
    pub consistency: Consistency,
    /// Username for PasswordAuthenticator; "" for none.
    pub username: String,
    /// Its password (or `password_file`).
    pub password: String,
    /// A file holding the password (first line), so it need not sit in the config.
    pub password_file: Option<PathBuf>,
    /// Days messages and inbox entries are kept (a TTL on each row); 0 keeps them forever.
    pub message_ttl_days: f64,
    /// Seconds to open a connection to a node.
    pub connect_timeout_secs: u64,
    /// Seconds one request may take before it fails.
    pub request_timeout_secs: u64,
    /// TLS to the nodes; off unless this table is present.
    pub tls: Option<CassandraTlsConfig>,
    /// Read the cluster's keyspaces and tables (`system_schema`), which token-aware routing
    /// needs. Off only for nodes without it (Cassandra before 3.0, behind a protocol bridge).
    pub schema_metadata: bool,
}

impl Default for CassandraConfig {
    fn default() -> Self {
        CassandraConfig {
            contact_points: vec!["127.0.0.1:9042".into()],
            keyspace: "natter".into(),
            replication_class: ReplicationClass::SimpleStrategy,
            replication_factor: 1,
            datacenters: BTreeMap::new(),
            local_datacenter: String::new(),
            consistency: Consistency::LocalQuorum,
            username: String::new(),
            password: String::new(),
            password_file: None,
            message_ttl_days: 0.0,
            connect_timeout_secs: 5,
            request_timeout_secs: 10,
            tls: None,
            schema_metadata: true,
        }
    }
}

/// `[store.cassandra.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraTlsConfig {
    /// PEM file of the CA(s) that signed the nodes' certificates.
    pub ca_file: PathBuf,
    /// Client certificate chain (PEM), where the cluster requires one.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[store.cassandra] replication_class`, written as Cassandra names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum ReplicationClass {
    /// One datacenter (tests): `replication_factor` copies.
    #[default]
    SimpleStrategy,
    /// Production: `datacenters` gives the copies in each datacenter.
    NetworkTopologyStrategy,
}

/// `[store.cassandra] consistency`: the consistency of every read and write, written as CQL
/// names it (`LOCAL_QUORUM`). The serial levels are not among them: they are for lightweight
/// transactions only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Consistency {
    /// A quorum of the local datacenter's replicas.
    #[default]
    LocalQuorum,
    /// A quorum of all replicas.
    Quorum,
    /// One replica in the local datacenter.
    LocalOne,
    /// One replica anywhere.
    One,
    /// A quorum in every datacenter.
    EachQuorum,
    /// Every replica.
    All,
}

/// Chat limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest chat message payload, in bytes.
    pub max_message_bytes: usize,
    /// Hours a `cid` is remembered for deduplication (24 at least).
    pub dedup_hours: u64,
    /// Most members in a group, the creator included.
    pub max_group_members: usize,
    /// Chat messages (`m/…`) one user may send per second, all devices together, sustained.
    pub messages_per_sec: f64,
    /// Chat messages one user may send at once above the sustained rate.
    pub messages_burst: u32,
    /// Requests (`q/…`) one user may make per second, all devices together, sustained.
    pub requests_per_sec: f64,
    /// Requests one user may make at once above the sustained rate.
    pub requests_burst: u32,
    /// Devices of one user with a session, connected or kept offline (persistent sessions).
    pub max_connections_per_user: usize,
    /// Groups one user may be a member of.
    pub max_groups_per_user: usize,
    /// Whose group adds make a user a member at once; anyone else's add is an invitation she
    /// accepts (`group.join`) or declines.
    pub group_adds: GroupAdds,
}

/// Who may add a user to a group without asking her.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupAdds {
    /// Anyone: an add makes a member at once (anyone can fill a user's group allowance).
    Anyone,
    /// Someone she has written to in their one-to-one chat; anyone else's add is an invitation.
    #[default]
    Contacts,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 64 * 1024,
            dedup_hours: 48,
            max_group_members: 1024,
            messages_per_sec: 20.0,
            messages_burst: 100,
            requests_per_sec: 20.0,
            requests_burst: 100,
            max_connections_per_user: 16,
            max_groups_per_user: 1000,
            group_adds: GroupAdds::Contacts,
        }
    }
}

/// Extra rights for users whose name matches `user` (`*` matches any run of characters).
/// Topic filters may use `%u` for the user's own name, as Mosquitto's `pattern` does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// User name or pattern, e.g. `sensor-*`, `*`.
    pub user: String,
    /// Filters the user may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Filters the user may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
}

/// A listener for clients without credentials, with its own topic rights. Clients on it never
/// reach the chat namespaces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousConfig {
    /// Where it listens (TCP).
    #[serde(deserialize_with = "addr")]
    pub listen: SocketAddr,
    /// Filters anonymous clients may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Filters anonymous clients may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
}

/// Presence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Where presence is kept.
    pub backend: PresenceBackend,
    /// Redis URL, for `backend = "redis"`.
    pub redis_url: String,
    /// Seconds a device stays online in Redis without a refresh (a crashed node's users go
    /// offline after this).
    pub ttl_secs: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            backend: PresenceBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            ttl_secs: 60,
        }
    }
}

/// `[presence] backend`: where presence is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceBackend {
    /// `memory`: in this process, for one node.
    #[default]
    Memory,
    /// `redis`: in Redis at `redis_url`, shared by every node.
    Redis,
}

/// Push notifications (FCM, APNs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Off: no push job is ever made.
    pub enabled: bool,
    /// Seconds natter waits for an online device to acknowledge a message before it pushes
    /// anyway (a phone whose app is in the background may hold a dead connection).
    pub grace_secs: u64,
    /// Put the message text in the notification. Off: only who wrote (end-to-end friendly).
    pub preview: bool,
    /// Sending attempts for one notification before it is dropped (and counted).
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubled at each attempt, with jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay, in seconds (a `Retry-After` from the provider wins).
    pub retry_max_secs: u64,
    /// Seconds a provider should keep trying to reach a device.
    pub ttl_secs: u64,
    /// Firebase Cloud Messaging, HTTP v1.
    pub fcm: Option<FcmConfig>,
    /// Apple Push Notification service.
    pub apns: Option<ApnsConfig>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            enabled: false,
            grace_secs: 5,
            preview: false,
            max_attempts: 8,
            retry_base_ms: 1000,
            retry_max_secs: 600,
            ttl_secs: 86_400,
            fcm: None,
            apns: None,
        }
    }
}

/// FCM HTTP v1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The Google service-account JSON (`client_email`, `private_key`, `token_uri`,
    /// `project_id`).
    pub service_account_file: PathBuf,
    /// Where FCM is.
    #[serde(default = "default_fcm_url")]
    pub base_url: String,
    /// The Firebase project; empty: the service account's `project_id`.
    #[serde(default)]
    pub project_id: String,
}

fn default_fcm_url() -> String {
    "https://fcm.googleapis.com".into()
}

/// APNs with a token-based (.p8) provider key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// The .p8 signing key from the Apple developer account.
    pub key_file: PathBuf,
    /// Its key id (10 characters).
    pub key_id: String,
    /// The developer team id.
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// Where APNs is (`https://api.sandbox.push.apple.com` for development builds).
    #[serde(default = "default_apns_url")]
    pub base_url: String,
}

fn default_apns_url() -> String {
    "https://api.push.apple.com".into()
}

/// Uploaded files (images, voice notes, documents).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Where the files live, and who signs their URLs.
    pub backend: MediaBackend,
    /// Local backend: the directory; empty: `{data_dir}/media`.
    pub dir: PathBuf,
    /// Largest upload, in bytes.
    pub max_bytes: u64,
    /// MIME types accepted; `type/*` accepts a whole family.
    pub mime_types: Vec<String>,
    /// Seconds an upload or download URL stays valid; an upload's body must have arrived
    /// by its URL's expiry.
    pub url_ttl_secs: u64,
    /// Local backend: uploads one user may send at once; more are refused (429).
    pub max_uploads_per_user: usize,
    /// Local backend: seconds an upload waits for one of the server's upload slots before it
    /// is refused as busy (503); 0 refuses at once.
    pub upload_wait_secs: u64,
    /// Days an upload is kept; its messages then say it expired. 0 keeps media for ever;
    /// fractions are allowed.
    pub retention_days: f64,
    /// Seconds between sweeps for expired media and abandoned uploads.
    pub sweep_secs: u64,
    /// Local backend: how clients reach natter's HTTP API (`https://chat.example.com`);
    /// empty: `http://{http.listen}`.
    pub public_url: String,
    /// Local backend: the key that signs URLs (at least 32 characters). Every node of a
    /// cluster needs the same one. Empty: one is made and kept in `{data_dir}/media.key`.
    pub secret: String,
    /// The bucket, for `backend = "s3"`.
    pub s3: Option<S3Config>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            backend: MediaBackend::Local,
            dir: PathBuf::new(),
            max_bytes: 100 * 1000 * 1000,
            mime_types: [
                "image/jpeg",
                "image/png",
                "image/gif",
                "image/webp",
                "image/heic",
                "video/mp4",
                "video/quicktime",
                "video/webm",
                "audio/mpeg",
                "audio/mp4",
                "audio/aac",
                "audio/ogg",
                "audio/webm",
                "application/pdf",
                "text/plain",
            ]
            .map(String::from)
            .to_vec(),
            url_ttl_secs: 900,
            max_uploads_per_user: 4,
            upload_wait_secs: 10,
            retention_days: 0.0,
            sweep_secs: 3600,
            public_url: String::new(),
            secret: String::new(),
            s3: None,
        }
    }
}

/// `[media] backend`: where uploaded files live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    /// `local`: files under `dir`, uploaded and downloaded through natter's HTTP API with
    /// HMAC-signed URLs.
    #[default]
    Local,
    /// `s3`: an S3-compatible bucket (`[media.s3]`), with presigned URLs.
    S3,
}

/// An S3-compatible bucket. Credentials left empty come from the usual AWS environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket (it must exist).
    pub bucket: String,
    /// The service's URL for S3-compatible servers (`http://127.0.0.1:9000`); empty: AWS.
    #[serde(default)]
    pub endpoint: String,
    /// The region; empty: `AWS_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: String,
    /// Access key id; empty: from the environment.
    #[serde(default)]
    pub access_key_id: String,
    /// Secret access key; empty: from the environment.
    #[serde(default)]
    pub secret_access_key: String,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `natter=debug,info`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people at a terminal.
    Human,
    /// One JSON object a line, for collectors.
    Json,
}

struct AddrVisitor;

impl serde::de::Visitor<'_> for AddrVisitor {
    type Value = Option<SocketAddr>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a socket address like \"127.0.0.1:1883\"")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.is_empty() {
            return Ok(None);
        }
        v.parse().map(Some).map_err(|_| {
            E::custom(format!(
                "invalid value {v:?}: expected a socket address like \"127.0.0.1:1883\""
            ))
        })
    }
}

fn addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    d.deserialize_str(AddrVisitor)?.ok_or_else(|| {
        serde::de::Error::custom(
            "invalid value \"\": expected a socket address like \"127.0.0.1:1883\"",
        )
    })
}

fn opt_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    d.deserialize_str(AddrVisitor)
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Parse {
                path: origin.to_owned(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message: inner.message().trim().to_owned(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.store.backend == StoreBackend::Cassandra {
            self.validate_cassandra()?;
        }
        if self.presence.ttl_secs < 3 {
            return invalid(
                "presence.ttl_secs",
                self.presence.ttl_secs.to_string(),
                "at least 3",
            );
        }
        if self.store.max_batch == 0 {
            return invalid("store.max_batch", "0".into(), "at least 1");
        }
        if self.store.max_queue == 0 {
            return invalid("store.max_queue", "0".into(), "at least 1");
        }
        if self.mqtt.max_packet_size < 1024 {
            return invalid(
                "mqtt.max_packet_size",
                self.mqtt.max_packet_size.to_string(),
                "at least 1024",
            );
        }
        if self.limits.max_message_bytes == 0
            || self.limits.max_message_bytes > self.mqtt.max_packet_size as usize
        {
            return invalid(
                "limits.max_message_bytes",
                self.limits.max_message_bytes.to_string(),
                "between 1 and mqtt.max_packet_size",
            );
        }
        if self.limits.max_group_members < 2 {
            return invalid(
                "limits.max_group_members",
                self.limits.max_group_members.to_string(),
                "at least 2",
            );
        }
        if self.limits.dedup_hours < 24 {
            return invalid(
                "limits.dedup_hours",
                self.limits.dedup_hours.to_string(),
                "at least 24",
            );
        }
        for (key, rate) in [
            ("limits.messages_per_sec", self.limits.messages_per_sec),
            ("limits.requests_per_sec", self.limits.requests_per_sec),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                return invalid(key, rate.to_string(), "a number above 0");
            }
        }
        for (key, n) in [
            ("limits.messages_burst", self.limits.messages_burst as usize),
            ("limits.requests_burst", self.limits.requests_burst as usize),
            (
                "limits.max_connections_per_user",
                self.limits.max_connections_per_user,
            ),
            (
                "limits.max_groups_per_user",
                self.limits.max_groups_per_user,
            ),
            ("shutdown_timeout_secs", self.shutdown_timeout_secs as usize),
            (
                "http.header_timeout_secs",
                self.http.header_timeout_secs as usize,
            ),
            (
                "http.idle_timeout_secs",
                self.http.idle_timeout_secs as usize,
            ),
            ("http.max_connections", self.http.max_connections),
        ] {
            if n == 0 {
                return invalid(key, "0".into(), "at least 1");
            }
        }
        if self.push.enabled && self.push.fcm.is_none() && self.push.apns.is_none() {
            return invalid(
                "push.enabled",
                "true".into(),
                "a [push.fcm] or [push.apns] table to send through",
            );
        }
        if self.push.max_attempts == 0 {
            return invalid("push.max_attempts", "0".into(), "at least 1");
        }
        if let Some(a) = &self.push.apns {
            for (key, v) in [
                ("push.apns.key_id", &a.key_id),
                ("push.apns.team_id", &a.team_id),
                ("push.apns.topic", &a.topic),
            ] {
                if v.is_empty() {
                    return invalid(key, "\"\"".into(), "a non-empty value");
                }
            }
        }
        self.validate_media()?;
        if let Some(tls) = &self.mqtt.tls {
            let taken = [Some(self.mqtt.tcp), self.mqtt.ws];
            if taken.contains(&Some(tls.listen))
                || tls
                    .wss
                    .is_some_and(|w| taken.contains(&Some(w)) || w == tls.listen)
            {
                return invalid(
                    "mqtt.tls.listen",
                    tls.listen.to_string(),
                    "addresses no other MQTT listener uses",
                );
            }
        }
        if self.mqtt.max_inflight == 0 {
            return invalid("mqtt.max_inflight", "0".into(), "at least 1");
        }
        if self.mqtt.min_keepalive > self.mqtt.max_keepalive {
            return invalid(
                "mqtt.min_keepalive",
                self.mqtt.min_keepalive.to_string(),
                "no more than mqtt.max_keepalive",
            );
        }
        if self.auth.token_ttl_secs == 0 {
            return invalid("auth.token_ttl_secs", "0".into(), "at least 1");
        }
        if self.auth.leeway_secs > 300 {
            return invalid(
                "auth.leeway_secs",
                self.auth.leeway_secs.to_string(),
                "0 to 300 seconds",
            );
        }
        for (key, n) in [
            (
                "auth.max_failures_per_ip",
                u64::from(self.auth.max_failures_per_ip),
            ),
            (
                "auth.max_failures_per_account",
                u64::from(self.auth.max_failures_per_account),
            ),
            ("auth.failure_window_secs", self.auth.failure_window_secs),
            (
                "mqtt.max_session_expiry_secs",
                self.mqtt.max_session_expiry_secs,
            ),
            (
                "mqtt.retained_max_topics",
                self.mqtt.retained_max_topics as u64,
            ),
        ] {
            if n == 0 {
                return invalid(key, "0".into(), "at least 1");
            }
        }
        if self.mqtt.retained_max_payload == 0
            || self.mqtt.retained_max_payload > self.mqtt.retained_max_bytes
        {
            return invalid(
                "mqtt.retained_max_payload",
                self.mqtt.retained_max_payload.to_string(),
                "between 1 and mqtt.retained_max_bytes",
            );
        }
        for (i, rule) in self.acl.iter().enumerate() {
            if rule.user.is_empty() {
                return invalid(
                    &format!("acl[{i}].user"),
                    "\"\"".into(),
                    "a user name or pattern",
                );
            }
            for (kind, filters) in [("publish", &rule.publish), ("subscribe", &rule.subscribe)] {
                check_filters(&format!("acl[{i}].{kind}"), filters)?;
            }
        }
        if let Some(anon) = &self.anonymous {
            check_filters("anonymous.publish", &anon.publish)?;
            check_filters("anonymous.subscribe", &anon.subscribe)?;
            if anon.listen == self.mqtt.tcp || Some(anon.listen) == self.mqtt.ws {
                return invalid(
                    "anonymous.listen",
                    anon.listen.to_string(),
                    "an address no other MQTT listener uses",
                );
            }
        }
        Ok(())
    }
}

impl Config {
    fn validate_cassandra(&self) -> Result<(), ConfigError> {
        let c = &self.store.cassandra;
        if c.contact_points.is_empty() {
            return invalid(
                "store.cassandra.contact_points",
                "[]".into(),
                "at least one \"host:port\"",
            );
        }
        for p in &c.contact_points {
            let port_ok = p
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return invalid(
                    "store.cassandra.contact_points",
                    format!("{p:?}"),
                    "\"host:port\", e.g. \"10.0.0.5:9042\"",
                );
            }
        }
        // The keyspace name goes into CQL text (it cannot be a bind marker), so only what CQL
        // allows unquoted is accepted.
        let ks = &c.keyspace;
        let ks_ok = !ks.is_empty()
            && ks.len() <= 48
            && ks.starts_with(|ch: char| ch.is_ascii_alphabetic())
            && ks.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !ks_ok {
            return invalid(
                "store.cassandra.keyspace",
                format!("{ks:?}"),
                "a letter, then up to 47 letters, digits or underscores",
            );
        }
        match c.replication_class {
            ReplicationClass::SimpleStrategy => {
                if c.replication_factor == 0 {
                    return invalid(
                        "store.cassandra.replication_factor",
                        "0".into(),
                        "at least 1",
                    );
                }
            }
            ReplicationClass::NetworkTopologyStrategy => {
                if c.datacenters.is_empty() {
                    return invalid(
                        "store.cassandra.datacenters",
                        "{}".into(),
                        "copies per datacenter, e.g. { dc1 = 3 }, for NetworkTopologyStrategy",
                    );
                }
                for (dc, n) in &c.datacenters {
                    let name_ok = !dc.is_empty()
                        && dc
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch));
                    if !name_ok || *n == 0 {
                        return invalid(
                            "store.cassandra.datacenters",
                            format!("{dc:?} = {n}"),
                            "a datacenter name (letters, digits, _ - .) and at least 1 copy",
                        );
                    }
                }
            }
        }
        if !(c.message_ttl_days.is_finite() && c.message_ttl_days >= 0.0)
            || c.message_ttl_days * 86_400.0 > i32::MAX as f64
        {
            return invalid(
                "store.cassandra.message_ttl_days",
                c.message_ttl_days.to_string(),
                "0 (keep) or a number of days up to 24855 (Cassandra's TTL limit)",
            );
        }
        if c.message_ttl_days > 0.0 && c.message_ttl_days * 24.0 < self.limits.dedup_hours as f64 {
            return invalid(
                "store.cassandra.message_ttl_days",
                c.message_ttl_days.to_string(),
                "0 or at least limits.dedup_hours (a resent message must still find the first)",
            );
        }
        for (key, v) in [
            (
                "store.cassandra.connect_timeout_secs",
                c.connect_timeout_secs,
            ),
            (
                "store.cassandra.request_timeout_secs",
                c.request_timeout_secs,
            ),
        ] {
            if v == 0 || v > 600 {
                return invalid(key, v.to_string(), "1 to 600 seconds");
            }
        }
        if c.password_file.is_some() && !c.password.is_empty() {
            return invalid(
                "store.cassandra.password_file",
                "set".into(),
                "either password or password_file, not both",
            );
        }
        if c.username.is_empty() && (!c.password.is_empty() || c.password_file.is_some()) {
            return invalid(
                "store.cassandra.username",
                "\"\"".into(),
                "a username where a password is given",
            );
        }
        if let Some(tls) = &c.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return invalid(
                    "store.cassandra.tls.key_file",
                    format!("{:?}", tls.key_file),
                    "cert_file and key_file together, or neither",
                );
            }
        }
        Ok(())
    }

    fn validate_media(&self) -> Result<(), ConfigError> {
        let m = &self.media;
        if m.backend == MediaBackend::S3 && m.s3.is_none() {
            return invalid(
                "media.backend",
                "\"s3\"".into(),
                "a [media.s3] table with the bucket",
            );
        }
        if let Some(s3) = &m.s3 {
            if s3.bucket.is_empty() {
                return invalid("media.s3.bucket", "\"\"".into(), "a bucket name");
            }
            if !(s3.endpoint.is_empty() || is_http_url(&s3.endpoint)) {
                return invalid(
                    "media.s3.endpoint",
                    format!("{:?}", s3.endpoint),
                    "an http:// or https:// URL",
                );
            }
        }
        if m.max_bytes == 0 {
            return invalid("media.max_bytes", "0".into(), "at least 1");
        }
        if m.url_ttl_secs == 0 || m.url_ttl_secs > 7 * 86_400 {
            // S3 refuses presigned URLs valid for more than seven days.
            return invalid(
                "media.url_ttl_secs",
                m.url_ttl_secs.to_string(),
                "1 to 604800 (seven days)",
            );
        }
        if m.sweep_secs == 0 {
            return invalid("media.sweep_secs", "0".into(), "at least 1");
        }
        if m.max_uploads_per_user == 0 {
            return invalid("media.max_uploads_per_user", "0".into(), "at least 1");
        }
        if m.upload_wait_secs > 3600 {
            // The wait also ends at the URL's expiry; an hour is already more than a client
            // waits for an answer.
            return invalid(
                "media.upload_wait_secs",
                m.upload_wait_secs.to_string(),
                "0 (refuse at once) to 3600",
            );
        }
        if !(m.retention_days.is_finite() && m.retention_days >= 0.0) {
            return invalid(
                "media.retention_days",
                m.retention_days.to_string(),
                "0 (keep) or a positive number of days",
            );
        }
        for (i, t) in m.mime_types.iter().enumerate() {
            let ok = t.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a != "*"
                    && t.bytes().all(|c| c.is_ascii_graphic() && c != b';')
            });
            if !ok {
                return invalid(
                    &format!("media.mime_types[{i}]"),
                    format!("{t:?}"),
                    "a MIME type such as \"image/png\" or \"image/*\"",
                );
            }
        }
        if !m.secret.is_empty() && m.secret.len() < 32 {
            return invalid(
                "media.secret",
                format!("({} characters)", m.secret.len()),
                "at least 32 characters, or empty to have one made",
            );
        }
        if !(m.public_url.is_empty() || is_http_url(&m.public_url)) {
            return invalid(
                "media.public_url",
                format!("{:?}", m.public_url),
                "an http:// or https:// URL",
            );
        }
        Ok(())
    }
}

/// Refuses a value: `key` = `value`, and what would have been accepted.
fn invalid(key: &str, value: String, expected: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key: key.into(),
        value,
        expected: expected.into(),
    })
}

fn is_http_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Topics a config rule may never open, because the chat rules own them.
pub use natter_types::topic::CHAT_NAMESPACES;

fn check_filters(key: &str, filters: &[String]) -> Result<(), ConfigError> {
    for f in filters {
        let levels: Vec<&str> = f.split('/').collect();
        let hash_ok = levels.iter().enumerate().all(|(i, l)| {
            (*l != "#" || i == levels.len() - 1)
                && (!l.contains('#') || *l == "#")
                && (!l.contains('+') || *l == "+")
        });
        if f.is_empty() || !hash_ok {
            return invalid(
                key,
                format!("{f:?}"),
                "an MQTT topic filter (`+` and `#` as whole levels, `#` last)",
            );
        }
        // A rule like `#` or `+/…` would open every user's chat topics; the chat ACL is not
        // something an integration rule can widen.
        if CHAT_NAMESPACES.contains(&levels[0]) || levels[0] == "#" || levels[0] == "+" {
            return invalid(
                key,
                format!("{f:?}"),
                &format!(
                    "a filter whose first level is a fixed name other than the chat namespaces {CHAT_NAMESPACES:?}"
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        Config::parse(text, "test.toml").unwrap_err().to_string()
    }

    #[test]
    fn an_empty_file_gives_the_embedded_defaults() {
        let c = Config::parse("", "x").unwrap();
        assert_eq!(c.mqtt.tcp.to_string(), "127.0.0.1:1883");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn the_shipped_config_parses_to_the_defaults() {
        let text = include_str!("../natter.toml");
        let c = Config::parse(text, "natter.toml").unwrap();
        let d = Config::default();
        assert_eq!(c.mqtt.tcp, d.mqtt.tcp);
        assert_eq!(c.mqtt.ws, d.mqtt.ws);
        assert_eq!(c.http.listen, d.http.listen);
        assert_eq!(c.limits.max_message_bytes, d.limits.max_message_bytes);
        assert_eq!(c.store.max_batch, d.store.max_batch);
        assert_eq!(c.http.header_timeout_secs, d.http.header_timeout_secs);
        assert_eq!(c.http.idle_timeout_secs, d.http.idle_timeout_secs);
        assert_eq!(c.http.max_connections, d.http.max_connections);
        assert_eq!(c.media.max_uploads_per_user, d.media.max_uploads_per_user);
        assert_eq!(c.media.upload_wait_secs, d.media.upload_wait_secs);
        assert_eq!(c.store.backend, d.store.backend);
        assert_eq!(c.presence.backend, d.presence.backend);
        assert_eq!(c.media.backend, d.media.backend);
        assert_eq!(c.log.format, d.log.format);
        assert_eq!(c.limits.group_adds, d.limits.group_adds);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let e = parse_err("[mqtt]\ntcpp = \"1.2.3.4:5\"\n");
        assert!(e.contains("tcpp"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_key_value_and_expectation() {
        let e = parse_err("[mqtt]\nmax_connections = \"many\"\n");
        assert!(e.contains("mqtt.max_connections"), "{e}");
        assert!(e.contains("many"), "{e}");
        assert!(e.contains("usize") || e.contains("integer"), "{e}");
    }

    #[test]
    fn a_bad_address_names_key_and_value() {
        let e = parse_err("[http]\nlisten = \"localhost\"\n");
        assert!(e.contains("http.listen"), "{e}");
        assert!(e.contains("\"localhost\""), "{e}");
        assert!(e.contains("socket address"), "{e}");
    }

    #[test]
    fn an_acl_rule_cannot_open_chat_topics() {
        let e = parse_err("[[acl]]\nuser = \"*\"\nsubscribe = [\"u/#\"]\n");
        assert!(e.contains("acl[0].subscribe"), "{e}");
        let e = parse_err("[[acl]]\nuser = \"*\"\npublish = [\"#\"]\n");
        assert!(e.contains("acl[0].publish"), "{e}");
        assert!(Config::parse(
            "[[acl]]\nuser = \"sensor-*\"\npublish = [\"tele/%u/#\"]\n",
            "x"
        )
        .is_ok());
    }
    #[test]
    fn http_and_upload_bounds_are_checked_key_by_key() {
        let d = Config::default();
        assert_eq!(d.http.header_timeout_secs, 10);
        assert_eq!(d.http.idle_timeout_secs, 60);
        assert_eq!(d.http.max_connections, 1024);
        assert_eq!(d.media.max_uploads_per_user, 4);
        assert_eq!(d.media.upload_wait_secs, 10);
        for (text, key) in [
            (
                "[http]\nheader_timeout_secs = 0\n",
                "http.header_timeout_secs",
            ),
            ("[http]\nidle_timeout_secs = 0\n", "http.idle_timeout_secs"),
            ("[http]\nmax_connections = 0\n", "http.max_connections"),
            (
                "[media]\nmax_uploads_per_user = 0\n",
                "media.max_uploads_per_user",
            ),
        ] {
            let e = parse_err(text);
            assert!(e.contains(key) && e.contains("at least 1"), "{e}");
        }
        let e = parse_err("[media]\nupload_wait_secs = 3601\n");
        assert!(
            e.contains("media.upload_wait_secs") && e.contains("3601") && e.contains("3600"),
            "{e}"
        );
        let ok = Config::parse(
            "[http]\nheader_timeout_secs = 1\nidle_timeout_secs = 5\nmax_connections = 8\n\
             [media]\nmax_uploads_per_user = 1\nupload_wait_secs = 0\n",
            "x",
        )
        .unwrap();
        assert_eq!(ok.http.max_connections, 8);
        assert_eq!(ok.media.upload_wait_secs, 0);
    }

    #[test]
    fn a_cassandra_store_is_configured_and_checked_key_by_key() {
        let ok = Config::parse(
            "[store]\nbackend = \"cassandra\"\n[store.cassandra]\n\
             contact_points = [\"10.0.0.5:9042\", \"db2.example:9042\"]\n\
             replication_class = \"NetworkTopologyStrategy\"\n\
             datacenters = { dc1 = 3, eu-west = 3 }\nlocal_datacenter = \"dc1\"\n\
             consistency = \"QUORUM\"\nmessage_ttl_days = 365\n\
             [store.cassandra.tls]\nca_file = \"/etc/natter/db-ca.pem\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(ok.store.cassandra.datacenters.get("eu-west"), Some(&3));
        assert_eq!(ok.store.cassandra.keyspace, "natter");
        let cas = |body: &str| {
            parse_err(&format!(
                "[store]\nbackend = \"cassandra\"\n[store.cassandra]\n{body}"
            ))
        };
        let e = cas("contact_points = [\"10.0.0.5\"]\n");
        assert!(
            e.contains("store.cassandra.contact_points") && e.contains("10.0.0.5"),
            "{e}"
        );
        let e = cas("keyspace = \"natter; DROP\"\n");
        assert!(e.contains("store.cassandra.keyspace"), "{e}");
        let e = cas("replication_class = \"NetworkTopologyStrategy\"\n");
        assert!(e.contains("store.cassandra.datacenters"), "{e}");
        let e = cas("consistency = \"TWO_PLEASE\"\n");
        assert!(
            e.contains("store.cassandra.consistency") && e.contains("LOCAL_QUORUM"),
            "{e}"
        );
        let e = cas("message_ttl_days = 1\n");
        assert!(
            e.contains("message_ttl_days") && e.contains("dedup_hours"),
            "{e}"
        );
        let e = cas("password = \"pw\"\n");
        assert!(e.contains("store.cassandra.username"), "{e}");
        let e = cas("[store.cassandra.tls]\nca_file = \"a\"\ncert_file = \"c\"\n");
        assert!(e.contains("store.cassandra.tls.key_file"), "{e}");
        let e = parse_err("[store]\nbackend = \"postgres\"\n");
        assert!(
            e.contains("store.backend") && e.contains("cassandra"),
            "{e}"
        );
    }

    #[test]
    fn a_word_a_key_does_not_accept_names_key_word_and_the_words_accepted() {
        for (text, key, word, accepted) in [
            (
                "[store]\nbackend = \"mongo\"\n",
                "store.backend",
                "mongo",
                "`embedded` or `cassandra`",
            ),
            (
                "[presence]\nbackend = \"etcd\"\n",
                "presence.backend",
                "etcd",
                "`memory` or `redis`",
            ),
            (
                "[media]\nbackend = \"gcs\"\n",
                "media.backend",
                "gcs",
                "`local` or `s3`",
            ),
            (
                "[log]\nformat = \"xml\"\n",
                "log.format",
                "xml",
                "`human` or `json`",
            ),
            (
                "[store.cassandra]\nreplication_class = \"Simple\"\n",
                "store.cassandra.replication_class",
                "Simple",
                "`SimpleStrategy` or `NetworkTopologyStrategy`",
            ),
            (
                "[store.cassandra]\nconsistency = \"local_quorum\"\n",
                "store.cassandra.consistency",
                "local_quorum",
                "`LOCAL_QUORUM`, `QUORUM`, `LOCAL_ONE`, `ONE`, `EACH_QUORUM`, `ALL`",
            ),
        ] {
            let e = parse_err(text);
            assert!(
                e.contains(&format!("key `{key}`"))
                    && e.contains(&format!("`{word}`"))
                    && e.contains(accepted),
                "{e}"
            );
        }
    }

    #[test]
    fn the_words_each_key_accepts_parse_to_their_variants() {
        let d = Config::default();
        assert_eq!(d.store.backend, StoreBackend::Embedded);
        assert_eq!(d.presence.backend, PresenceBackend::Memory);
        assert_eq!(d.media.backend, MediaBackend::Local);
        assert_eq!(d.log.format, LogFormat::Human);
        assert_eq!(
            d.store.cassandra.replication_class,
            ReplicationClass::SimpleStrategy
        );
        assert_eq!(d.store.cassandra.consistency, Consistency::LocalQuorum);
        let c = Config::parse(
            "[store]\nbackend = \"cassandra\"\n[store.cassandra]\n\
             replication_class = \"NetworkTopologyStrategy\"\ndatacenters = { dc1 = 3 }\n\
             consistency = \"EACH_QUORUM\"\n\
             [presence]\nbackend = \"redis\"\n[log]\nformat = \"json\"\n\
             [media]\nbackend = \"s3\"\n[media.s3]\nbucket = \"b\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.store.backend, StoreBackend::Cassandra);
        assert_eq!(
            c.store.cassandra.replication_class,
            ReplicationClass::NetworkTopologyStrategy
        );
        assert_eq!(c.store.cassandra.consistency, Consistency::EachQuorum);
        assert_eq!(c.presence.backend, PresenceBackend::Redis);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.media.backend, MediaBackend::S3);
        for (word, level) in [
            ("LOCAL_QUORUM", Consistency::LocalQuorum),
            ("QUORUM", Consistency::Quorum),
            ("LOCAL_ONE", Consistency::LocalOne),
            ("ONE", Consistency::One),
            ("EACH_QUORUM", Consistency::EachQuorum),
            ("ALL", Consistency::All),
        ] {
            let c = Config::parse(
                &format!("[store.cassandra]\nconsistency = \"{word}\"\n"),
                "x",
            );
            assert_eq!(c.unwrap().store.cassandra.consistency, level);
        }
    }
}
