//! HMAC-SHA256 signatures for local media URLs.
//!
//! A URL names a media id and an expiry; the signature binds them to what the URL may do: an
//! upload URL also binds the announced size and MIME type, so a URL for a 1 KiB PNG cannot be
//! reused for anything else, and changing any part of the URL breaks it.

use std::path::Path;

use hmac::{Hmac, Mac};
use natter_types::MediaId;
use sha2::Sha256;

use crate::MediaError;

/// What a signed URL allows.
#[derive(Debug, Clone, Copy)]
pub enum Verb<'a> {
    /// Uploading exactly `size` bytes of `mime`.
    Put {
        /// The announced size.
        size: u64,
        /// The announced MIME type.
        mime: &'a str,
    },
    /// Downloading.
    Get,
}

/// The signing key.
pub(crate) struct Key(Vec<u8>);

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Key {
    /// A key from `media.secret`.
    pub(crate) fn from_secret(secret: &str) -> Key {
        Key(secret.as_bytes().to_vec())
    }

    /// The key kept at `path`, made (random, readable by the owner only) if there is none, so
    /// that URLs handed out stay valid across restarts.
    pub(crate) fn load_or_make(path: &Path) -> Result<Key, MediaError> {
        let fail = |what: &str, e: std::io::Error| {
            crate::unusable(
                format!(
                    "config key `media.secret` is empty and {} cannot be {what}",
                    path.display()
                ),
                e,
            )
        };
        match std::fs::read_to_string(path) {
            Ok(text) => match unhex(text.trim()) {
                Some(k) if k.len() >= 32 => return Ok(Key(k)),
                _ => {
                    return Err(MediaError::Config(crate::ConfigError::NotAKey(
                        path.to_owned(),
                    )))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail("read", e)),
        }
        let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        use std::io::Write;
        opts.open(path)
            .and_then(|mut f| f.write_all(hex(&key).as_bytes()).and_then(|_| f.sync_all()))
            .map_err(|e| fail("written", e))?;
        Ok(Key(key))
    }

    fn mac(&self, verb: &Verb<'_>, id: &MediaId, exp: u64) -> Hmac<Sha256> {
        // Only fails for keys of invalid length, and HMAC takes any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        let text = match verb {
            Verb::Put { size, mime } => {
                format!("natter-media-v1\nPUT\n{id}\n{size}\n{mime}\n{exp}")
            }
            Verb::Get => format!("natter-media-v1\nGET\n{id}\n{exp}"),
        };
        mac.update(text.as_bytes());
        mac
    }

    /// The signature of `verb` on `id` until `exp` (Unix seconds), as hex.
    pub(crate) fn sign(&self, verb: &Verb<'_>, id: &MediaId, exp: u64) -> String {
        hex(&self.mac(verb, id, exp).finalize().into_bytes())
    }

    /// Checks a signature in constant time.
    pub(crate) fn verify(
        &self,
        verb: &Verb<'_>,
        id: &MediaId,
        exp: u64,
        sig: &str,
    ) -> Result<(), MediaError> {
        let sig = unhex(sig).ok_or(MediaError::BadSignature)?;
        self.mac(verb, id, exp)
            .verify_slice(&sig)
            .map_err(|_| MediaError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_binds_every_part_of_the_url() {
        let key = Key::from_secret("a secret of at least thirty-two characters");
        let id = MediaId::generate();
        let put = Verb::Put {
            size: 10,
            mime: "image/png",
        };
        let sig = key.sign(&put, &id, 1000);
        assert!(key.verify(&put, &id, 1000, &sig).is_ok());
        assert!(key.verify(&put, &id, 1001, &sig).is_err(), "expiry");
        let bigger = Verb::Put {
            size: 11,
            mime: "image/png",
        };
        assert!(key.verify(&bigger, &id, 1000, &sig).is_err(), "size");
        let other_mime = Verb::Put {
            size: 10,
            mime: "image/gif",
        };
        assert!(key.verify(&other_mime, &id, 1000, &sig).is_err(), "mime");
        assert!(key.verify(&Verb::Get, &id, 1000, &sig).is_err(), "verb");
        assert!(
            key.verify(&put, &MediaId::generate(), 1000, &sig).is_err(),
            "id"
        );
        assert!(key.verify(&put, &id, 1000, "zz").is_err(), "not hex");
        let other = Key::from_secret("another secret of at least thirty-two chars");
        assert!(other.verify(&put, &id, 1000, &sig).is_err(), "key");
    }

    #[test]
    fn a_made_key_is_kept_for_the_next_start() {
        let dir = std::env::temp_dir().join(format!("natter-key-{}", MediaId::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("media.key");
        let a = Key::load_or_make(&path).unwrap();
        let b = Key::load_or_make(&path).unwrap();
        assert_eq!(a.0, b.0);
        std::fs::write(&path, "nonsense").unwrap();
        assert!(Key::load_or_make(&path).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
