//! The HTTP accept loop, written once: every connection the server takes goes through [`serve`],
//! which bounds what a client can hold (CONTRACT.md §3, issue 6):
//!
//! - **a cap** on open HTTP connections ([`Limits::max_connections`]); beyond it a connection gets
//!   a minimal `503 overloaded` JSON answer and is closed, and at most [`Limits::max_refusals`]
//!   such answers are in progress at once (beyond that, the connection is closed unanswered), so
//!   refusing cannot itself exhaust descriptors;
//! - **a header timeout**: a request head must be complete within [`Limits::header_timeout`] of
//!   the accept (first request) or of its first byte (later requests on a kept-alive connection);
//! - **an idle timeout**: a kept-alive connection with no request in flight is closed after
//!   [`Limits::idle_timeout`]; a request in flight (a slow upload, a long send) is never cut;
//! - **accept errors** (`EMFILE`, `ENFILE`, …) back off from 10 ms doubling to 1 s, are counted,
//!   and logged at most once per [`ACCEPT_LOG_EVERY`];
//! - **hyper's own error answers** (400 malformed request, 414 URI too long, 431 headers too
//!   large), which hyper writes with an empty body and no hook, are replaced on the wire by JSON
//!   `{"error","code"}` answers ([`TrackedIo`]).
//!
//! Why not hyper's `header_read_timeout`: in hyper 1.12 its timer starts whenever hyper waits for
//! a head: at accept, but also as soon as a kept-alive connection goes idle, so it would close
//! every idle keep-alive connection after the header timeout and the idle timeout could never be
//! longer. (It does start at accept, so it covers a connection that sends nothing.) The watchdog
//! here knows whether a request is in flight and applies the right one of the two timers.
//!
//! Only HTTP/1.1 is served (no h2c prior knowledge): no client of ours speaks cleartext HTTP/2
//! (browsers use HTTP/2 only over TLS, which a proxy in front terminates), and hyper-util's
//! protocol sniffing would read bytes before any of the timers above could apply.
//!
//! A connection upgraded to a WebSocket leaves this module's count when hyper hands the socket
//! over (the connection future completes, dropping its permit); the realtime session limit
//! (`max_connections`) counts it from its upgrade on, and the header and idle timeouts stop
//! applying to it. Every upgrade request carries a [`ConnControl`] in its extensions, the one way
//! to end an upgraded connection that is still read and written through hyper (Socket.IO's).

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::task::AtomicWaker;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use spacecast_observability::{LogLimiter, Metrics};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Descriptors kept for everything that is not a client connection: the store's files (journal,
/// segments), the listener, the runtime, logs, media files being read or written.
pub const DESCRIPTOR_RESERVE: u64 = 256;
/// Refusal answers in progress at once, at most (each holds one descriptor for ≤ 2 s).
pub const MAX_REFUSALS: usize = 64;
/// Accept errors are logged at most once per this period (the rest are counted).
pub const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(5);
/// How long a refusal may take to write its answer, then to drain what the client sent.
const REFUSAL_STEP: Duration = Duration::from_secs(1);

/// The limits applied by [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open HTTP connections (not yet upgraded) allowed at once.
    pub max_connections: usize,
    /// Refusal answers in progress at once.
    pub max_refusals: usize,
    /// Longest wait for a complete request head (from accept, or from the head's first byte).
    pub header_timeout: Duration,
    /// Longest a kept-alive connection may stay open with no request in flight.
    pub idle_timeout: Duration,
}

/// The connection caps that fit a descriptor limit; see [`fit_descriptors`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    pub http: usize,
    pub realtime: usize,
    pub refusals: usize,
    /// Whether the configured caps had to be lowered.
    pub lowered: bool,
}

/// Lowers the HTTP and realtime connection caps so that every connection, the refusals in
/// progress and [`DESCRIPTOR_RESERVE`] fit in `nofile` descriptors. The descriptors left are
/// shared evenly (max-min fair): a cap below its half keeps its value and leaves the rest to the
/// other, so an explicitly small cap is never lowered for the sake of a large default. Each cap
/// stays at least 1, so a limit below the reserve still starts (and the caller warns).
pub fn fit_descriptors(nofile: u64, http: usize, realtime: usize) -> Fit {
    let wanted = (http as u64)
        .saturating_add(realtime as u64)
        .saturating_add(MAX_REFUSALS as u64)
        .saturating_add(DESCRIPTOR_RESERVE);
    if wanted <= nofile {
        return Fit {
            http,
            realtime,
            refusals: MAX_REFUSALS,
            lowered: false,
        };
    }
    let available = nofile.saturating_sub(DESCRIPTOR_RESERVE);
    let refusals = (available / 8).clamp(1, MAX_REFUSALS as u64);
    let rest = available.saturating_sub(refusals);
    let (http_want, realtime_want) = (http as u64, realtime as u64);
    let (http_fit, realtime_fit) = if http_want <= rest / 2 {
        (http_want, rest - http_want)
    } else if realtime_want <= rest / 2 {
        (rest - realtime_want, realtime_want)
    } else {
        (rest / 2, rest - rest / 2)
    };
    Fit {
        http: http_fit.clamp(1, http_want.max(1)) as usize,
        realtime: realtime_fit.clamp(1, realtime_want.max(1)) as usize,
        refusals: refusals as usize,
        lowered: true,
    }
}

/// Serves HTTP/1.1 (with upgrades) on `listener` until `shutdown` resolves, then stops accepting,
/// lets requests in flight finish, closes idle connections, and returns once every connection is
/// gone. The caller bounds that wait (the server's `shutdown_timeout`).
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(limits.max_refusals));
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut backoff = Backoff::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff.reset();
                stream
            }
            Err(e) => {
                let pause = backoff.on_error(&e, &metrics);
                if let Some(pause) = pause {
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                continue;
            }
        };
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            let service = service.clone();
            let metrics = metrics.clone();
            let stop = stop.clone();
            tracker.spawn(async move {
                metrics.http_connections.inc();
                let reason = serve_connection(stream, service, limits, stop).await;
                metrics.http_connections.dec();
                metrics
                    .http_connections_closed
                    .with_label_values(&[reason.as_str()])
                    .inc();
                drop(permit);
            });
        } else if let Ok(permit) = refusals.clone().try_acquire_owned() {
            metrics
                .http_connections_refused
                .with_label_values(&["answered"])
                .inc();
            tokio::spawn(async move {
                refuse(stream).await;
                drop(permit);
            });
        } else {
            metrics
                .http_connections_refused
                .with_label_values(&["dropped"])
                .inc();
            drop(stream);
        }
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    tracker.wait().await;
}

/// The TCP stream under a connection upgraded from [`serve`], and the bytes hyper had already
/// read past the upgrade request (empty unless the client sent before the 101).
///
/// # Errors
/// The upgrade back when `upgraded` did not come from this listener.
pub fn into_tcp(
    upgraded: hyper::upgrade::Upgraded,
) -> Result<(TcpStream, Bytes), hyper::upgrade::Upgraded> {
    let parts = upgraded.downcast::<TokioIo<TrackedIo>>()?;
    Ok((parts.io.into_inner().inner, parts.read_buf))
}

/// Why a connection ended (the `reason` label of `spacecast_http_connections_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closed {
    /// The client closed, or hyper closed after `Connection: close`.
    Normal,
    /// Handed over to a WebSocket session.
    Upgraded,
    HeaderTimeout,
    IdleTimeout,
    /// Closed idle at shutdown.
    Shutdown,
    /// A malformed request (hyper answered 400/414/431 and closed).
    ParseError,
    /// Reset, or closed in the middle of a message.
    IoError,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::Normal => "normal",
            Closed::Upgraded => "upgraded",
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Shutdown => "shutdown",
            Closed::ParseError => "parse_error",
            Closed::IoError => "io_error",
        }
    }
}

/// Serves one connection until it ends; returns why it ended.
async fn serve_connection<S, B>(
    stream: TcpStream,
    service: S,
    limits: Limits,
    stop: CancellationToken,
) -> Closed
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let _ = stream.set_nodelay(true);
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        state: state.clone(),
        rewrite: None,
        classified: false,
    });
    let svc = TrackedService {
        inner: service,
        state: state.clone(),
    };
    let mut builder = http1::Builder::new();
    // Our watchdog applies the header and idle timeouts (see the module doc).
    builder.timer(TokioTimer::new()).header_read_timeout(None);
    let conn = builder.serve_connection(io, svc).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let watchdog = watchdog(&state, limits, &stop);
    let mut watchdog = std::pin::pin!(watchdog);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                return match r {
                    Ok(()) if state.upgraded() => Closed::Upgraded,
                    Ok(()) => Closed::Normal,
                    Err(e) => {
                        tracing::debug!(error = %e, "HTTP connection error");
                        if e.is_parse() || e.is_parse_too_large() || e.is_parse_version_h2() {
                            Closed::ParseError
                        } else if e.is_timeout() {
                            Closed::HeaderTimeout
                        } else {
                            Closed::IoError
                        }
                    }
                };
            }
            // Dropping `conn` closes the socket; the watchdog only fires with no request in flight.
            reason = &mut watchdog => {
                tracing::debug!(reason = reason.as_str(), "closing HTTP connection");
                return reason;
            }
            () = stop.cancelled(), if !draining => {
                draining = true;
                // Finishes the request in flight (answered with `Connection: close`), then closes.
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves when the connection should be closed: a timeout with no request in flight, or
/// shutdown while a request head is arriving. Never resolves while a request is in flight.
async fn watchdog(state: &ConnState, limits: Limits, stop: &CancellationToken) -> Closed {
    loop {
        let deadline = {
            let phase = state.phase();
            if phase.upgraded {
                None
            } else if phase.in_flight == 0 && phase.head_started.is_some() && stop.is_cancelled() {
                // A partial head at shutdown: hyper's graceful shutdown closes idle connections
                // and finishes (and flushes) answers in flight, but would wait for this head.
                return Closed::Shutdown;
            } else {
                phase.deadline(limits)
            }
        };
        let stopping = stop.is_cancelled();
        match deadline {
            Some((at, reason)) if Instant::now() >= at => return reason,
            Some((at, _)) => tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = state.wake.notified() => {}
                () = stop.cancelled(), if !stopping => {}
            },
            None => tokio::select! {
                () = state.wake.notified() => {}
                () = stop.cancelled(), if !stopping => {}
            },
        }
    }
}

/// What the watchdog and the IO wrapper know about one connection.
struct ConnState {
    phase: Mutex<Phase>,
    /// Woken when the last request in flight ends (a deadline starts again).
    wake: Notify,
    /// Set once the connection is upgraded: the IO wrapper then only passes bytes through.
    passthrough: AtomicBool,
    /// Set by [`ConnControl::abort`]: every read and write of the upgraded connection fails.
    aborted: AtomicBool,
    /// The reader and the writer of the upgraded connection while they wait on the socket, so
    /// an abort wakes them to see it.
    read_waker: AtomicWaker,
    write_waker: AtomicWaker,
}

struct Phase {
    accepted: Instant,
    /// Requests handed to the service whose response body is not finished.
    in_flight: usize,
    /// Requests handed to the service so far.
    served: u64,
    /// When the first byte of the next request head arrived (no request in flight).
    head_started: Option<Instant>,
    /// When the last request in flight ended.
    idle_since: Instant,
    /// Responses produced by the service whose head is not yet seen on the wire.
    heads_pending: usize,
    upgraded: bool,
}

impl Phase {
    /// The next deadline, and what it enforces; `None` while a request is in flight.
    fn deadline(&self, limits: Limits) -> Option<(Instant, Closed)> {
        if self.in_flight > 0 {
            return None;
        }
        Some(match self.head_started {
            Some(t) => (t + limits.header_timeout, Closed::HeaderTimeout),
            None if self.served == 0 => {
                (self.accepted + limits.header_timeout, Closed::HeaderTimeout)
            }
            None => (self.idle_since + limits.idle_timeout, Closed::IdleTimeout),
        })
    }
}

impl ConnState {
    fn new() -> Self {
        let now = Instant::now();
        ConnState {
            phase: Mutex::new(Phase {
                accepted: now,
                in_flight: 0,
                served: 0,
                head_started: None,
                idle_since: now,
                heads_pending: 0,
                upgraded: false,
            }),
            wake: Notify::new(),
            passthrough: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            read_waker: AtomicWaker::new(),
            write_waker: AtomicWaker::new(),
        }
    }

    /// The phase; the lock is never held across an `.await`, and a poisoned lock (a panic while
    /// holding it, which nothing here can cause) still yields the data.
    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn upgraded(&self) -> bool {
        self.passthrough.load(Ordering::Acquire)
    }

    /// Bytes arrived from the client.
    fn on_read(&self) {
        let mut p = self.phase();
        if p.in_flight == 0 && p.head_started.is_none() {
            p.head_started = Some(Instant::now());
        }
    }

    /// Classifies a write that starts a response head (`HTTP/1.x …`).
    fn on_head(&self, status: u16) -> HeadFrom {
        let mut p = self.phase();
        if status == 100 {
            HeadFrom::Hyper
        } else if p.heads_pending > 0 {
            p.heads_pending -= 1;
            HeadFrom::Service
        } else if p.in_flight == 0 {
            HeadFrom::Hyper
        } else {
            HeadFrom::Service
        }
    }
}

enum HeadFrom {
    Service,
    Hyper,
}

/// One connection, as seen by the protocol that takes it over after an upgrade: in the
/// extensions of every request with an `Upgrade` header.
#[derive(Clone)]
pub struct ConnControl(Arc<ConnState>);

impl ConnControl {
    /// Ends the upgraded connection from outside the tasks that own it: from now on every read
    /// and write of it fails (`ConnectionAborted`) at once, and a task waiting on one is woken
    /// to see it, so its owner drops the socket, which closes it.
    ///
    /// For a socket library that cannot close its transport on demand: engineioxide's writer
    /// waits for as long as the peer keeps a full socket open (a client that reads nothing), and
    /// offers no way to stop it. Only upgrades still read and written through hyper's IO are
    /// reached (Socket.IO's); the native stream takes the raw socket and closes it itself.
    /// Before the upgrade, it only marks the connection.
    pub fn abort(&self) {
        self.0.aborted.store(true, Ordering::Release);
        self.0.read_waker.wake();
        self.0.write_waker.wake();
    }

    /// Whether [`ConnControl::abort`] was called.
    pub fn is_aborted(&self) -> bool {
        self.0.aborted.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for ConnControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnControl")
            .field("aborted", &self.is_aborted())
            .finish()
    }
}

/// Counts one request from its hand-over to the service until its response body is finished or
/// dropped (including when the client goes away and hyper drops the service's future).
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: Arc<ConnState>) -> Self {
        {
            let mut p = state.phase();
            p.in_flight += 1;
            p.served += 1;
            p.head_started = None;
        }
        InFlight(state)
    }

    fn response_ready(&self, status: StatusCode) {
        let mut p = self.0.phase();
        p.heads_pending += 1;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            p.upgraded = true;
            self.0.passthrough.store(true, Ordering::Release);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let idle = {
            let mut p = self.0.phase();
            p.in_flight = p.in_flight.saturating_sub(1);
            p.idle_since = Instant::now();
            p.in_flight == 0
        };
        if idle {
            self.0.wake.notify_one();
        }
    }
}

/// The service wrapper that tracks requests in flight.
struct TrackedService<S> {
    inner: S,
    state: Arc<ConnState>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<Incoming>> for TrackedService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: Body + Unpin + Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if req.headers().contains_key(hyper::header::UPGRADE) {
            req.extensions_mut().insert(ConnControl(self.state.clone()));
        }
        let guard = InFlight::start(self.state.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            guard.response_ready(res.status());
            Ok(res.map(|inner| TrackedBody {
                inner,
                _guard: guard,
            }))
        })
    }
}

/// A response body that ends its request's [`InFlight`] count when finished or dropped.
pub struct TrackedBody<B> {
    inner: B,
    _guard: InFlight,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket as hyper sees it: notes when request bytes arrive (for the header timeout), and
/// replaces hyper's own empty-bodied error answers by JSON ones.
///
/// A write is taken for hyper's error answer only when all of these hold: no request is in
/// flight and no response of the service is waiting for its head; the write starts with
/// `HTTP/1.x 400|414|431`; and it is exactly a head of hyper's fixed shape (`content-length: 0`,
/// `date`, optionally `connection: close`, nothing else). hyper writes that answer only after
/// failing to parse a request head, when the service was never called.
struct TrackedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    rewrite: Option<Rewrite>,
    /// The current write was classified and is being retried after `Pending`: hyper passes the
    /// same bytes again, which must not be counted as another head.
    classified: bool,
}

/// A replacement answer being written in place of hyper's head of `claimed` bytes.
struct Rewrite {
    bytes: Bytes,
    written: usize,
    claimed: usize,
}

impl TrackedIo {
    /// Whether `buf` (the start of a write) is hyper's own error head, given the connection
    /// state; then the JSON answer to write instead.
    fn replacement(&mut self, buf: &[u8]) -> Option<Bytes> {
        if self.classified || self.state.passthrough.load(Ordering::Acquire) {
            return None;
        }
        let status = head_status(buf)?;
        self.classified = true;
        match self.state.on_head(status) {
            HeadFrom::Service => None,
            HeadFrom::Hyper => hyper_error_answer(status, buf),
        }
    }

    fn poll_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(r) = self.rewrite.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while r.written < r.bytes.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &r.bytes[r.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            r.written += n;
        }
        let claimed = r.claimed;
        self.rewrite = None;
        self.classified = false;
        Poll::Ready(Ok(claimed))
    }
}

/// The error of every read and write after [`ConnControl::abort`].
fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection aborted by the server",
    )
}

impl TrackedIo {
    /// Whether the connection is upgraded and aborted: then every IO call fails.
    fn is_aborted(&self) -> bool {
        self.state.passthrough.load(Ordering::Acquire) && self.state.aborted.load(Ordering::Acquire)
    }

    /// After an IO call of an upgraded connection returned `Pending`: registers the task with
    /// `waker` so an abort reaches it (checked again after registering, so none is missed).
    fn pending<T>(&self, waker: &AtomicWaker, cx: &Context<'_>) -> Poll<io::Result<T>> {
        if self.state.passthrough.load(Ordering::Acquire) {
            waker.register(cx.waker());
            if self.is_aborted() {
                return Poll::Ready(Err(aborted()));
            }
        }
        Poll::Pending
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_aborted() {
            return Poll::Ready(Err(aborted()));
        }
        let before = buf.filled().len();
        let Poll::Ready(read) = Pin::new(&mut self.inner).poll_read(cx, buf) else {
            return self.pending(&self.state.read_waker, cx);
        };
        read?;
        if buf.filled().len() > before && !self.state.passthrough.load(Ordering::Acquire) {
            self.state.on_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.rewrite.is_none()
            && let Some(bytes) = self.replacement(buf)
        {
            self.rewrite = Some(Rewrite {
                bytes,
                written: 0,
                claimed: buf.len(),
            });
        }
        if self.rewrite.is_some() {
            return self.poll_rewrite(cx);
        }
        if self.is_aborted() {
            return Poll::Ready(Err(aborted()));
        }
        let Poll::Ready(r) = Pin::new(&mut self.inner).poll_write(cx, buf) else {
            return self.pending(&self.state.write_waker, cx);
        };
        self.classified = false;
        Poll::Ready(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.rewrite.is_none() {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            let first = bufs.iter().find(|b| !b.is_empty());
            // hyper's error head has no body: it is the whole write.
            if let Some(first) = first
                && first.len() == total
                && let Some(bytes) = self.replacement(first)
            {
                self.rewrite = Some(Rewrite {
                    bytes,
                    written: 0,
                    claimed: total,
                });
            } else if let Some(first) = first
                && first.len() != total
                && !self.classified
                && !self.state.passthrough.load(Ordering::Acquire)
                && let Some(status) = head_status(first)
            {
                // A head followed by a body: the service's response (hyper's has no body).
                self.classified = true;
                let _ = self.state.on_head(status);
            }
        }
        if self.rewrite.is_some() {
            return self.poll_rewrite(cx);
        }
        if self.is_aborted() {
            return Poll::Ready(Err(aborted()));
        }
        let Poll::Ready(r) = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) else {
            return self.pending(&self.state.write_waker, cx);
        };
        self.classified = false;
        Poll::Ready(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_aborted() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The status code of a write that starts with an HTTP/1.x status line.
fn head_status(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    if rest.get(3) != Some(&b' ') || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The JSON answer replacing hyper's error head `head` of `status`, if `head` has hyper's shape.
fn hyper_error_answer(status: u16, head: &[u8]) -> Option<Bytes> {
    let (code, message) = match status {
        400 => ("invalid_request", "Malformed HTTP request"),
        414 => ("uri_too_long", "The request URI is too long"),
        431 => ("headers_too_large", "The request headers are too large"),
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?;
    let fields = text.strip_suffix("\r\n\r\n")?;
    let mut lines = fields.split("\r\n");
    lines.next()?; // the status line
    let mut has_length = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match (name.to_ascii_lowercase().as_str(), value.trim()) {
            ("content-length", "0") => has_length = true,
            ("date", _) => {}
            ("connection", v) if v.eq_ignore_ascii_case("close") => {}
            _ => return None,
        }
    }
    if !has_length {
        return None;
    }
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = serde_json::json!({ "error": message, "code": code }).to_string();
    Some(Bytes::from(format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )))
}

/// The answer to a connection beyond the cap.
fn refusal_answer() -> String {
    let body = serde_json::json!({
        "error": "Too many HTTP connections; retry shortly",
        "code": "overloaded",
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answers 503 `overloaded` and closes. The answer goes out first (the request need not be
/// read); then the write side is closed and what the client sent is drained briefly, so the
/// close is a FIN the client reads after the answer rather than a reset that could discard it.
async fn refuse(mut stream: TcpStream) {
    let answer = refusal_answer();
    let wrote = tokio::time::timeout(REFUSAL_STEP, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(wrote, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(REFUSAL_STEP, async {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        while total < 64 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// Accept-error pacing: per-connection errors are skipped at once; resource errors (out of
/// descriptors or memory) pause the loop, 10 ms doubling to 1 s, until an accept succeeds.
struct Backoff {
    next: Option<Duration>,
    log: LogLimiter,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: None,
            log: LogLimiter::new(ACCEPT_LOG_EVERY),
        }
    }
}

impl Backoff {
    fn reset(&mut self) {
        self.next = None;
    }

    /// Counts and (rate-limited) logs `e`; returns how long to pause.
    fn on_error(&mut self, e: &io::Error, metrics: &Metrics) -> Option<Duration> {
        let per_connection = matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::Interrupted
        );
        let kind = if per_connection {
            "aborted"
        } else {
            "resources"
        };
        metrics.http_accept_errors.with_label_values(&[kind]).inc();
        if per_connection {
            tracing::debug!(error = %e, "accept: connection aborted");
            return None;
        }
        let pause = self.next.map_or(Duration::from_millis(10), |d| {
            (d * 2).min(Duration::from_secs(1))
        });
        self.next = Some(pause);
        if let Some(suppressed) = self.log.allow() {
            tracing::warn!(
                error = %e,
                suppressed,
                pause_ms = pause.as_millis() as u64,
                "cannot accept connections; pausing accepts"
            );
        }
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_that_fit_are_kept() {
        let f = fit_descriptors(1_000_000, 10_000, 100_000);
        assert_eq!((f.http, f.realtime, f.lowered), (10_000, 100_000, false));
    }

    #[test]
    fn caps_are_lowered_to_fit_the_descriptor_limit() {
        let f = fit_descriptors(20_000, 10_000, 100_000);
        assert!(f.lowered);
        assert!(
            f.http as u64 + f.realtime as u64 + f.refusals as u64 + DESCRIPTOR_RESERVE <= 20_000,
            "{f:?}"
        );
        assert!(f.http >= 9_000 && f.realtime >= 9_000, "{f:?}");
        // A small explicit cap is kept; the large one takes the rest.
        let f = fit_descriptors(20_000, 20, 100_000);
        assert_eq!(f.http, 20);
        assert_eq!(
            f.realtime as u64,
            20_000 - DESCRIPTOR_RESERVE - f.refusals as u64 - 20
        );
        let f = fit_descriptors(300, 10_000, 100_000);
        assert!(f.http >= 1 && f.realtime >= 1 && f.refusals >= 1, "{f:?}");
        assert!(f.http as u64 + f.realtime as u64 + f.refusals as u64 + DESCRIPTOR_RESERVE <= 300);
        // Below the reserve, each cap is still at least one.
        let f = fit_descriptors(10, 5, 5);
        assert_eq!((f.http, f.realtime, f.refusals), (1, 1, 1));
    }

    #[test]
    fn only_hypers_fixed_error_heads_are_replaced() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\n";
        assert_eq!(head_status(head), Some(431));
        let answer = hyper_error_answer(431, head).expect("replaced");
        let text = std::str::from_utf8(&answer).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains("\"code\":\"headers_too_large\""), "{text}");
        // A head with a body or other headers is not hyper's.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n";
        assert!(hyper_error_answer(400, ours).is_none());
        assert!(
            hyper_error_answer(
                400,
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}"
            )
            .is_none()
        );
        assert!(
            hyper_error_answer(404, b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .is_none()
        );
        assert_eq!(head_status(b"HTTP/1.1 4x1 y"), None);
        assert_eq!(head_status(b"\x81\x05hello"), None);
    }

    /// A server side of a loopback connection as hyper would hand it over after a 101, and the
    /// client side (kept open, never read).
    async fn upgraded_pair() -> (TrackedIo, ConnControl, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let state = Arc::new(ConnState::new());
        state.passthrough.store(true, Ordering::Release);
        let io = TrackedIo {
            inner: server,
            state: state.clone(),
            rewrite: None,
            classified: false,
        };
        (io, ConnControl(state), client)
    }

    #[tokio::test]
    async fn an_abort_ends_an_upgraded_connections_blocked_write_and_waiting_read() {
        // The writer: a client that reads nothing, so writes block once the buffers are full.
        let (mut io, control, _client) = upgraded_pair().await;
        let (blocked_tx, blocked) = tokio::sync::oneshot::channel();
        let writer = tokio::spawn(async move {
            let chunk = vec![0u8; 64 * 1024];
            let mut blocked_tx = Some(blocked_tx);
            std::future::poll_fn(|cx| {
                loop {
                    match Pin::new(&mut io).poll_write(cx, &chunk) {
                        Poll::Ready(Ok(_)) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(e),
                        Poll::Pending => {
                            if let Some(tx) = blocked_tx.take() {
                                let _ = tx.send(());
                            }
                            return Poll::Pending;
                        }
                    }
                }
            })
            .await
        });
        tokio::time::timeout(Duration::from_secs(10), blocked)
            .await
            .expect("the write blocks")
            .unwrap();
        assert!(!control.is_aborted());
        control.abort();
        let err = tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .expect("the blocked write is woken by the abort")
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);

        // The reader: nothing ever comes.
        let (mut io, control, _client) = upgraded_pair().await;
        let (waiting_tx, waiting) = tokio::sync::oneshot::channel();
        let reader = tokio::spawn(async move {
            let mut waiting_tx = Some(waiting_tx);
            std::future::poll_fn(|cx| {
                let mut bytes = [0u8; 16];
                let mut buf = ReadBuf::new(&mut bytes);
                match Pin::new(&mut io).poll_read(cx, &mut buf) {
                    Poll::Pending => {
                        if let Some(tx) = waiting_tx.take() {
                            let _ = tx.send(());
                        }
                        Poll::Pending
                    }
                    Poll::Ready(r) => Poll::Ready(r),
                }
            })
            .await
        });
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the read waits")
            .unwrap();
        control.abort();
        let read = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("the waiting read is woken by the abort")
            .unwrap();
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
    }

    #[test]
    fn accept_errors_back_off_to_one_second() {
        let m = Metrics::new();
        let mut b = Backoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..10).map(|_| b.on_error(&emfile, &m).unwrap()).collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert_eq!(*pauses.last().unwrap(), Duration::from_secs(1));
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(b.on_error(&aborted, &m), None);
        b.reset();
        assert_eq!(b.on_error(&emfile, &m), Some(Duration::from_millis(10)));
    }
}
