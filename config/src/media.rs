//! `[media]` and `[media.s3]`: where uploaded files live, which are accepted, and how long
//! their URLs and the files themselves last.
//!
//! Validation checks the values, one concern at a time; it must never create the directory,
//! read the signing key or reach the bucket (the media crate does).

use std::path::PathBuf;

use serde::Deserialize;

use crate::check::{at_least_one, empty_or_http_url, in_range, invalid};
use crate::ConfigError;

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

impl MediaConfig {
    /// Checks `[media]` and `[media.s3]`.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.check_backend()?;
        self.check_uploads()?;
        self.check_times()?;
        self.check_mime_types()?;
        self.check_signing()
    }

    fn check_backend(&self) -> Result<(), ConfigError> {
        if self.backend == MediaBackend::S3 && self.s3.is_none() {
            return invalid(
                "media.backend",
                "\"s3\"".into(),
                "a [media.s3] table with the bucket",
            );
        }
        let Some(s3) = &self.s3 else {
            return Ok(());
        };
        if s3.bucket.is_empty() {
            return invalid("media.s3.bucket", "\"\"".into(), "a bucket name");
        }
        empty_or_http_url("media.s3.endpoint", &s3.endpoint)
    }

    fn check_uploads(&self) -> Result<(), ConfigError> {
        at_least_one("media.max_bytes", self.max_bytes)?;
        at_least_one(
            "media.max_uploads_per_user",
            self.max_uploads_per_user as u64,
        )?;
        // The wait also ends at the URL's expiry; an hour is already more than a client waits
        // for an answer.
        in_range(
            "media.upload_wait_secs",
            self.upload_wait_secs,
            0..=3600,
            "0 (refuse at once) to 3600",
        )
    }

    fn check_times(&self) -> Result<(), ConfigError> {
        // S3 refuses presigned URLs valid for more than seven days.
        in_range(
            "media.url_ttl_secs",
            self.url_ttl_secs,
            1..=7 * 86_400,
            "1 to 604800 (seven days)",
        )?;
        at_least_one("media.sweep_secs", self.sweep_secs)?;
        if !(self.retention_days.is_finite() && self.retention_days >= 0.0) {
            return invalid(
                "media.retention_days",
                self.retention_days.to_string(),
                "0 (keep) or a positive number of days",
            );
        }
        Ok(())
    }

    fn check_mime_types(&self) -> Result<(), ConfigError> {
        for (i, t) in self.mime_types.iter().enumerate() {
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
        Ok(())
    }

    /// The local backend's URLs: the signing key and the public address they carry.
    fn check_signing(&self) -> Result<(), ConfigError> {
        if !self.secret.is_empty() && self.secret.len() < 32 {
            return invalid(
                "media.secret",
                format!("({} characters)", self.secret.len()),
                "at least 32 characters, or empty to have one made",
            );
        }
        empty_or_http_url("media.public_url", &self.public_url)
    }
}
