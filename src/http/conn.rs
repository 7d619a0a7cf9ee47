//! natter's own HTTP accept loop: HTTP/1.1 with header and idle timeouts, a cap on
//! connections, and each request told its client's address.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Bounds on HTTP connections (`[http]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// From a request's first byte (or the connection's start) to the end of its headers.
    pub header_timeout: Duration,
    /// No bytes moved, between requests or during one.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl ConnLimits {
    /// The `[http]` bounds of `config`.
    pub fn from_config(config: &natter_config::HttpConfig) -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_secs(config.header_timeout_secs),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
            max_connections: config.max_connections,
        }
    }
}

/// How often, at most, natter says that new connections wait for a free one.
const FULL_WARN_EVERY: Duration = Duration::from_secs(60);

/// Serves `app` over HTTP/1.1 on `listener` for as long as the future runs (natter stops it by
/// exiting, as it did with `axum::serve`: `/readyz` answers 503 during shutdown).
///
/// At most `max_connections` connections are open: at the cap natter stops accepting, so
/// new connections wait in the kernel's listen backlog, holding no file descriptor of natter's,
/// until one closes. A connection that has not sent a whole request head within
/// `header_timeout` of its first byte (or of its start), or that moves no bytes for
/// `idle_timeout`, is closed; a request body that keeps arriving is never cut by either (an
/// upload is bounded by its URL's expiry instead).
pub async fn serve(listener: TcpListener, app: Router, limits: ConnLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    // natter times headers itself (below): hyper's header timeout also runs while a keep-alive
    // connection waits for its next request, so it would close idle connections at the header
    // timeout.
    builder.header_read_timeout(None);
    let service = TowerToHyperService::new(app);
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if last_full_warning.is_none_or(|t| t.elapsed() >= FULL_WARN_EVERY) {
                    last_full_warning = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "HTTP connections at http.max_connections; new ones wait until one closes"
                    );
                }
                match slots.clone().acquire_owned().await {
                    Ok(slot) => slot,
                    // Never closed; were it, there would be nothing left to serve.
                    Err(_) => return,
                }
            }
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                ) {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let watch = Arc::new(Watch::new());
        let conn = builder.serve_connection(
            TokioIo::new(Watched {
                inner: stream,
                watch: watch.clone(),
            }),
            Tracked {
                inner: service.clone(),
                watch: watch.clone(),
                peer,
            },
        );
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            loop {
                let deadline = watch.deadline(&limits);
                tokio::select! {
                    done = conn.as_mut() => {
                        if let Err(e) = done {
                            tracing::debug!(error = %e, "HTTP connection ended");
                        }
                        return;
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        // Bytes that moved meanwhile pushed the deadline on.
                        if watch.deadline(&limits) <= Instant::now() {
                            tracing::debug!("HTTP connection closed: header or idle timeout");
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// What one connection has been doing, for its timeouts.
struct Watch(Mutex<WatchState>);

struct WatchState {
    /// Requests whose handler is running.
    requests: usize,
    /// When the request head being read now began (its first byte, or the connection's start).
    head_since: Option<Instant>,
    /// When bytes last moved (or a handler started or ended).
    last: Instant,
}

impl Watch {
    fn new() -> Watch {
        let now = Instant::now();
        Watch(Mutex::new(WatchState {
            requests: 0,
            head_since: Some(now),
            last: now,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the connection is to be closed unless something happens first.
    fn deadline(&self, limits: &ConnLimits) -> Instant {
        let s = self.state();
        match s.head_since {
            Some(t) if s.requests == 0 => t + limits.header_timeout,
            _ => s.last + limits.idle_timeout,
        }
    }

    fn read(&self) {
        let mut s = self.state();
        let now = Instant::now();
        s.last = now;
        if s.requests == 0 && s.head_since.is_none() {
            s.head_since = Some(now);
        }
    }

    fn wrote(&self) {
        self.state().last = Instant::now();
    }

    /// A request's head is complete and its handler starts.
    fn request(self: &Arc<Self>) -> RequestGuard {
        let mut s = self.state();
        s.requests += 1;
        s.head_since = None;
        s.last = Instant::now();
        RequestGuard(self.clone())
    }
}

/// A running handler; its end counts as activity.
struct RequestGuard(Arc<Watch>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.requests = s.requests.saturating_sub(1);
        s.last = Instant::now();
    }
}

/// A TCP stream that tells its [`Watch`] when bytes move.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.watch.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.watch.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The router, telling the connection's [`Watch`] while a handler runs.
#[derive(Clone)]
struct Tracked {
    inner: TowerToHyperService<Router>,
    watch: Arc<Watch>,
    /// The client's address, for handlers that count per address (`POST /v1/token`).
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let running = self.watch.request();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let answered = answer.await;
            drop(running);
            answered
        })
    }
}
