//! TLS for MQTT (8883) and secure WebSocket, with certificates that can be replaced while
//! running.
//!
//! rmqtt reads its TLS certificate once, when a listener binds, and its connection handler is
//! private, so it cannot be handed a new certificate later. natter therefore ends TLS itself:
//! each TLS listener accepts, does the handshake with whatever certificate is current, and
//! pipes the plaintext to a broker listener on loopback, prefixed with a PROXY protocol v1 line
//! so that the broker still sees the client's own address. A reload swaps the certificate for
//! the next handshakes; connections already open keep theirs and are never dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// A certificate or key that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("config key `{key}` = {path}: {reason}")]
    File {
        /// `mqtt.tls.cert_file` or `mqtt.tls.key_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key does not belong to the certificate, or rustls refused them.
    #[error("config keys `mqtt.tls.cert_file` / `mqtt.tls.key_file`: {0}")]
    Pair(String),
}

/// Reads a PEM certificate chain and private key into a server configuration.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    fn file_err(
        key: &'static str,
        path: &Path,
    ) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError {
        let path = path.to_owned();
        move |e| TlsError::File {
            key,
            path: path.clone(),
            reason: e.to_string(),
        }
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(file_err("mqtt.tls.cert_file", cert_file))?
        .collect::<Result<_, _>>()
        .map_err(file_err("mqtt.tls.cert_file", cert_file))?;
    if certs.is_empty() {
        return Err(TlsError::File {
            key: "mqtt.tls.cert_file",
            path: cert_file.to_owned(),
            reason: "no PEM certificate in it".into(),
        });
    }
    let key =
        PrivateKeyDer::from_pem_file(key_file).map_err(file_err("mqtt.tls.key_file", key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The certificate in use, shared by every TLS listener; [`Certs::reload`] replaces it.
#[derive(Clone)]
pub struct Certs {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl Certs {
    /// Loads the pair now; an error names the file at fault.
    pub fn open(cert_file: &Path, key_file: &Path) -> Result<Certs, TlsError> {
        Ok(Certs {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: Arc::new(RwLock::new(load(cert_file, key_file)?)),
        })
    }

    /// Reads the files again. On error the certificate in use stays, and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load(&self.cert_file, &self.key_file)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The PROXY protocol v1 line that tells the broker who is really connected.
fn proxy_line(client: SocketAddr, local: SocketAddr) -> String {
    let family = if client.is_ipv4() && local.is_ipv4() {
        "TCP4"
    } else {
        "TCP6"
    };
    let ip = |a: SocketAddr| match a {
        SocketAddr::V4(v4) if family == "TCP6" => v4.ip().to_ipv6_mapped().to_string(),
        other => other.ip().to_string(),
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        ip(client),
        ip(local),
        client.port(),
        local.port()
    )
}

/// Accepts TLS connections on `listener` and pipes each, decrypted, to `inner` (a broker
/// listener on loopback that expects the PROXY line). At most `max_connections` at once;
/// a handshake has `handshake_timeout` to finish. Runs until the task is dropped.
pub(crate) async fn terminate(
    listener: TcpListener,
    inner: SocketAddr,
    certs: Certs,
    max_connections: usize,
    handshake_timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let (socket, client) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "TLS listener cannot accept");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::info!(remote = %client, "TLS connection refused: too many connections");
            continue;
        };
        let acceptor = certs.acceptor();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = socket.set_nodelay(true);
            let local = socket.local_addr().unwrap_or(inner);
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(socket)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(remote = %client, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(remote = %client, "TLS handshake timed out");
                    return;
                }
            };
            if let Err(e) = pipe(tls, inner, proxy_line(client, local)).await {
                tracing::debug!(remote = %client, error = %e, "TLS connection ended");
            }
        });
    }
}

async fn pipe(
    mut tls: tokio_rustls::server::TlsStream<TcpStream>,
    inner: SocketAddr,
    header: String,
) -> std::io::Result<()> {
    let mut plain = TcpStream::connect(inner).await?;
    plain.set_nodelay(true)?;
    plain.write_all(header.as_bytes()).await?;
    tokio::io::copy_bidirectional(&mut tls, &mut plain).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_line_names_the_client_first() {
        let c: SocketAddr = "203.0.113.7:50000".parse().unwrap();
        let l: SocketAddr = "10.0.0.1:8883".parse().unwrap();
        assert_eq!(
            proxy_line(c, l),
            "PROXY TCP4 203.0.113.7 10.0.0.1 50000 8883\r\n"
        );
        let c6: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        assert_eq!(
            proxy_line(c6, l),
            "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 40000 8883\r\n"
        );
    }

    #[test]
    fn a_missing_certificate_is_named() {
        let e = load(Path::new("/nonexistent/cert.pem"), Path::new("/x")).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("mqtt.tls.cert_file"), "{s}");
        assert!(s.contains("/nonexistent/cert.pem"), "{s}");
    }
}
