//! Uploaded files: where their bytes live, the URLs that move them, and the checks on them.
//!
//! [`Media`] puts one face on two places behind `object_store`: a directory under the data dir
//! (the default), whose bytes travel through natter's own HTTP route with HMAC-signed URLs, and
//! an S3-compatible bucket, whose bytes travel straight between client and bucket with presigned
//! URLs. Either way an upload counts only once its size (and sha256, if announced) match what
//! was announced. This crate must never decide who may upload or download what: that is the
//! bridge's, which owns users, chats and the media records in the store.

mod sign;

use natter_types::clock::now_ms;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt, TryStreamExt};
use natter_config::{MediaBackend, MediaConfig};
use natter_types::MediaId;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

pub use sign::Verb;

/// Uploads received through natter at once (local backend); more wait up to
/// `media.upload_wait_secs` for a slot and are then refused as busy, so that buffers stay
/// bounded (each holds at most two chunks).
const MAX_UPLOADS: usize = 64;
/// Bytes buffered per write to the local directory.
const LOCAL_CHUNK: usize = 256 * 1024;

/// What can go wrong with an upload or a download.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Announced over the configured limit.
    #[error("{size} bytes is over the upload limit of {limit}")]
    TooLarge {
        /// The announced size.
        size: u64,
        /// `media.max_bytes`.
        limit: u64,
    },
    /// An empty file.
    #[error("an upload needs at least one byte")]
    Empty,
    /// A MIME type not on `media.mime_types`.
    #[error("MIME type {0:?} is not accepted here")]
    MimeRefused(String),
    /// A URL whose signature does not match (tampered, or for another file).
    #[error("the URL's signature is not valid")]
    BadSignature,
    /// A URL used after its expiry.
    #[error("the URL has expired")]
    UrlExpired,
    /// More bytes arrived than were announced.
    #[error("more than the announced {announced} bytes")]
    Oversize {
        /// The announced size.
        announced: u64,
    },
    /// Fewer (or, found later in a bucket, other) bytes than announced.
    #[error("{got} bytes arrived but {announced} were announced")]
    SizeMismatch {
        /// The announced size.
        announced: u64,
        /// What arrived.
        got: u64,
    },
    /// The bytes do not hash to the announced sha256.
    #[error("the bytes do not match the announced sha256")]
    HashMismatch,
    /// Nothing has been uploaded under that id yet.
    #[error("nothing has been uploaded yet")]
    NotUploaded,
    /// The client's upload broke off.
    #[error("the upload broke off: {0}")]
    Body(String),
    /// Too many uploads at once.
    #[error("too many uploads at once; retry later")]
    Busy,
    /// The upload URL expired while the body was still arriving; nothing was kept.
    #[error("the upload URL expired before the last byte arrived; ask for a new one")]
    Deadline,
    /// The disk is full; nothing of the upload was kept.
    #[error("no space left for uploads")]
    Full,
    /// The directory or bucket failed.
    #[error("media storage failed: {0}")]
    Storage(#[source] BoxError),
    /// The configuration cannot be used (names the key).
    #[error(transparent)]
    Config(ConfigError),
}

/// A media configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A directory, file or bucket named by the config cannot be used.
    #[error("{what}: {source}")]
    Unusable {
        /// The config key, its value, and what could not be done with it.
        what: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The media key file holds no key.
    #[error("{} is not a media key (64 hex digits); delete it to have one made", .0.display())]
    NotAKey(PathBuf),
}

/// A [`ConfigError::Unusable`]: `what` could not be done, because of `source`.
fn unusable(what: String, source: impl std::error::Error + Send + Sync + 'static) -> MediaError {
    MediaError::Config(ConfigError::Unusable {
        what,
        source: Box::new(source),
    })
}

/// Any error, kept as the cause of a [`MediaError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A URL that works until `expires_ms`.
#[derive(Debug, Clone)]
pub struct SignedUrl {
    /// Where to PUT or GET.
    pub url: String,
    /// Unix ms after which it is refused.
    pub expires_ms: u64,
}

/// Where the bytes live.
enum Place {
    /// A directory; URLs point at natter's HTTP route and carry an HMAC.
    Local {
        dir: PathBuf,
        public_url: String,
        key: sign::Key,
    },
    /// A bucket; URLs are presigned for it.
    S3(Arc<AmazonS3>),
}

/// The media service: one per process.
pub struct Media {
    objects: Arc<dyn ObjectStore>,
    place: Place,
    max_bytes: u64,
    mime_types: Vec<String>,
    url_ttl: Duration,
    uploads: Semaphore,
    /// How long an upload waits for a slot in `uploads`.
    upload_wait: Duration,
}

/// The moment a local URL expiring at `exp` (Unix seconds, as in its query) stops working, on
/// tokio's clock: an upload's body must have arrived by then.
pub fn url_deadline(exp: u64) -> tokio::time::Instant {
    let left = Duration::from_millis(exp.saturating_mul(1000).saturating_sub(now_ms()));
    let now = tokio::time::Instant::now();
    // A signed expiry is at most days away; a year stands in for one too far to add.
    now.checked_add(left)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

fn path(id: &MediaId) -> Path {
    Path::from(id.as_str())
}

/// Whether an error, or one it was caused by, is a full disk.
fn is_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) {
                return true;
            }
        }
        cur = err.source();
    }
    e.to_string().contains("No space left on device")
}

/// A failed write or read: a full disk, or another storage failure.
fn failure<E: std::error::Error + Send + Sync + 'static>(e: E) -> MediaError {
    if is_full(&e) {
        MediaError::Full
    } else {
        MediaError::Storage(Box::new(e))
    }
}

fn storage(e: object_store::Error) -> MediaError {
    match e {
        object_store::Error::NotFound { .. } => MediaError::NotUploaded,
        e => failure(e),
    }
}

impl Media {
    /// Opens the configured place: creates the local directory (and signing key) or sets up
    /// the bucket client. `http_listen` is the default public address of local URLs.
    pub fn open(
        cfg: &MediaConfig,
        data_dir: &FsPath,
        http_listen: SocketAddr,
    ) -> Result<Media, MediaError> {
        let (objects, place): (Arc<dyn ObjectStore>, Place) = match (cfg.backend, &cfg.s3) {
            (MediaBackend::S3, Some(s3)) => {
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_client_options(
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(5))
                            .with_timeout(Duration::from_secs(120)),
                    )
                    .with_retry(RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(30),
                        ..RetryConfig::default()
                    });
                if !s3.endpoint.is_empty() {
                    b = b
                        .with_endpoint(&s3.endpoint)
                        .with_allow_http(s3.endpoint.starts_with("http://"));
                }
                let region = if !s3.region.is_empty() {
                    s3.region.clone()
                } else {
                    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())
                };
                b = b.with_region(region);
                if !s3.access_key_id.is_empty() {
                    b = b.with_access_key_id(&s3.access_key_id);
                }
                if !s3.secret_access_key.is_empty() {
                    b = b.with_secret_access_key(&s3.secret_access_key);
                }
                let s3 = Arc::new(b.build().map_err(|e| {
                    unusable(format!("config key `media.s3` (bucket {:?})", s3.bucket), e)
                })?);
                (s3.clone(), Place::S3(s3))
            }
            _ => {
                let dir = if cfg.dir.as_os_str().is_empty() {
                    data_dir.join("media")
                } else {
                    cfg.dir.clone()
                };
                let key_of =
                    |what: &str| format!("config key `media.dir` = {}: {what}", dir.display());
                std::fs::create_dir_all(&dir)
                    .map_err(|e| unusable(key_of("cannot create it"), e))?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| unusable(key_of("cannot use it"), e))?
                    .with_automatic_cleanup(true);
                let key = if cfg.secret.is_empty() {
                    sign::Key::load_or_make(&data_dir.join("media.key"))?
                } else {
                    sign::Key::from_secret(&cfg.secret)
                };
                let public_url = if cfg.public_url.is_empty() {
                    if http_listen.ip().is_unspecified() {
                        tracing::warn!(
                            http = %http_listen,
                            "media URLs will name {http_listen}, which clients cannot reach: \
                             set media.public_url"
                        );
                    }
                    format!("http://{http_listen}")
                } else {
                    cfg.public_url.trim_end_matches('/').to_owned()
                };
                (
                    Arc::new(fs),
                    Place::Local {
                        dir,
                        public_url,
                        key,
                    },
                )
            }
        };
        Ok(Media {
            objects,
            place,
            max_bytes: cfg.max_bytes,
            mime_types: cfg.mime_types.clone(),
            url_ttl: Duration::from_secs(cfg.url_ttl_secs),
            uploads: Semaphore::new(MAX_UPLOADS),
            upload_wait: Duration::from_secs(cfg.upload_wait_secs),
        })
    }

    /// Whether uploads and downloads go through natter's HTTP route (else straight to S3).
    pub fn is_local(&self) -> bool {
        matches!(self.place, Place::Local { .. })
    }

    /// Checks an announced upload against the size limit and the MIME allowlist.
    pub fn check_announce(&self, mime: &str, size: u64) -> Result<(), MediaError> {
        if size == 0 {
            return Err(MediaError::Empty);
        }
        if size > self.max_bytes {
            return Err(MediaError::TooLarge {
                size,
                limit: self.max_bytes,
            });
        }
        let allowed = self.mime_types.iter().any(|t| match t.strip_suffix("/*") {
            Some(family) => mime
                .split_once('/')
                .is_some_and(|(a, b)| a.eq_ignore_ascii_case(family) && !b.is_empty()),
            None => t.eq_ignore_ascii_case(mime),
        });
        if allowed {
            Ok(())
        } else {
            Err(MediaError::MimeRefused(mime.to_owned()))
        }
    }

    fn expiry(&self) -> u64 {
        now_ms() + self.url_ttl.as_millis() as u64
    }

    /// A URL that allows `verb` on `id` until the configured time from now: for an upload, where
    /// the client PUTs exactly the announced bytes; for a download, where a reader GETs them.
    pub async fn signed_url(&self, verb: &Verb<'_>, id: &MediaId) -> Result<SignedUrl, MediaError> {
        let expires_ms = self.expiry();
        let url = match &self.place {
            Place::Local {
                public_url, key, ..
            } => {
                let exp = expires_ms / 1000;
                let sig = key.sign(verb, id, exp);
                format!("{public_url}/v1/media/{id}?exp={exp}&sig={sig}")
            }
            Place::S3(s3) => {
                let method = match verb {
                    Verb::Put { .. } => http::Method::PUT,
                    Verb::Get => http::Method::GET,
                };
                s3.signed_url(method, &path(id), self.url_ttl)
                    .await
                    .map_err(storage)?
                    .to_string()
            }
        };
        Ok(SignedUrl { url, expires_ms })
    }

    /// Checks a local URL's signature and expiry (`exp`, Unix seconds) for `verb` on `id`.
    pub fn check_url(
        &self,
        verb: &Verb<'_>,
        id: &MediaId,
        exp: u64,
        sig: &str,
    ) -> Result<(), MediaError> {
        let Place::Local { key, .. } = &self.place else {
            return Err(MediaError::BadSignature);
        };
        key.verify(verb, id, exp, sig)?;
        if exp * 1000 < now_ms() {
            return Err(MediaError::UrlExpired);
        }
        Ok(())
    }

    /// Stores the bytes of `id` from `body`, which must be exactly `size` bytes (and hash to
    /// `sha256` if given) and have arrived by `until` (the URL's expiry, see [`url_deadline`]).
    /// Waits up to `media.upload_wait_secs` for an upload slot. Nothing is kept unless every
    /// check passes; once this returns, the bytes are on disk (fsynced, for the local directory).
    pub async fn receive<S, E>(
        &self,
        id: &MediaId,
        size: u64,
        sha256: Option<&str>,
        mut body: S,
        until: tokio::time::Instant,
    ) -> Result<(), MediaError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let wait_until = (tokio::time::Instant::now() + self.upload_wait).min(until);
        let _slot = match tokio::time::timeout_at(wait_until, self.uploads.acquire()).await {
            Ok(Ok(slot)) => slot,
            // The semaphore is never closed; were it, no upload could run.
            Ok(Err(_)) => return Err(MediaError::Busy),
            Err(_) if tokio::time::Instant::now() >= until => return Err(MediaError::Deadline),
            Err(_) => {
                tracing::info!(
                    media = %id,
                    waited_secs = self.upload_wait.as_secs(),
                    "upload refused: every upload slot stayed taken"
                );
                return Err(MediaError::Busy);
            }
        };
        let chunk = if self.is_local() {
            LOCAL_CHUNK
        } else {
            // S3 refuses multipart parts under 5 MiB.
            5 << 20
        };
        let upload = self
            .objects
            .put_multipart(&path(id))
            .await
            .map_err(storage)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, chunk);
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        let failed = loop {
            // The whole body, not each read, is bounded: a trickle cannot outlive the URL.
            let Ok(next) = tokio::time::timeout_at(until, body.next()).await else {
                break Some(MediaError::Deadline);
            };
            let Some(next) = next else {
                break None;
            };
            let bytes = match next {
                Ok(b) => b,
                Err(e) => break Some(MediaError::Body(e.to_string())),
            };
            got += bytes.len() as u64;
            if got > size {
                break Some(MediaError::Oversize { announced: size });
            }
            hasher.update(&bytes);
            if let Err(e) = w.wait_for_capacity(2).await {
                break Some(storage(e));
            }
            w.put(bytes);
        };
        let failed = failed.or_else(|| {
            if got != size {
                return Some(MediaError::SizeMismatch {
                    announced: size,
                    got,
                });
            }
            match sha256 {
                Some(h) if !h.eq_ignore_ascii_case(&sign::hex(&hasher.finalize())) => {
                    Some(MediaError::HashMismatch)
                }
                _ => None,
            }
        });
        if let Some(e) = failed {
            if let Err(abort) = w.abort().await {
                tracing::warn!(media = %id, error = %abort, "an aborted upload left a part behind");
            }
            return Err(e);
        }
        w.finish().await.map_err(storage)?;
        if let Place::Local { dir, .. } = &self.place {
            let (dir, file) = (dir.clone(), dir.join(id.as_str()));
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::File::open(file)?.sync_all()?;
                std::fs::File::open(dir)?.sync_all()
            })
            .await
            .map_err(failure)?
            .map_err(failure)?;
        }
        Ok(())
    }

    /// Checks bytes that reached the bucket without natter (presigned PUT): they must be there,
    /// `size` bytes long, and hash to `sha256` if given (read back once to check).
    pub async fn check_stored(
        &self,
        id: &MediaId,
        size: u64,
        sha256: Option<&str>,
    ) -> Result<(), MediaError> {
        let meta = self.objects.head(&path(id)).await.map_err(storage)?;
        if meta.size != size {
            return Err(MediaError::SizeMismatch {
                announced: size,
                got: meta.size,
            });
        }
        if let Some(want) = sha256 {
            let mut stream = self.read(id).await?;
            let mut hasher = Sha256::new();
            while let Some(bytes) = stream.try_next().await? {
                hasher.update(&bytes);
            }
            if !want.eq_ignore_ascii_case(&sign::hex(&hasher.finalize())) {
                return Err(MediaError::HashMismatch);
            }
        }
        Ok(())
    }

    /// The bytes of `id`, streamed.
    pub async fn read(
        &self,
        id: &MediaId,
    ) -> Result<BoxStream<'static, Result<Bytes, MediaError>>, MediaError> {
        self.read_range(id, None).await
    }

    /// The bytes of `id` in `range` (all of them for `None`), streamed: a player seeking in a
    /// video, or a download resumed, reads only what it asks for.
    pub async fn read_range(
        &self,
        id: &MediaId,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, MediaError>>, MediaError> {
        let opts = object_store::GetOptions {
            range: range.map(object_store::GetRange::Bounded),
            ..Default::default()
        };
        let got = self
            .objects
            .get_opts(&path(id), opts)
            .await
            .map_err(storage)?;
        Ok(got.into_stream().map_err(storage).boxed())
    }

    /// Deletes the bytes of `id`; bytes already gone are not an error.
    pub async fn delete(&self, id: &MediaId) -> Result<(), MediaError> {
        match self.objects.delete(&path(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage(e)),
        }
    }
}
