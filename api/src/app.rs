//! `App`: the handles every route and session needs, built once by the server and passed
//! explicitly (no globals).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spacecast_engine::Engine;
use spacecast_observability::{LogLimiter, Metrics};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthError, Authenticator, User, bearer};
use crate::config::Config;
use crate::connections::ConnectionLimits;
use crate::media::MediaStore;
use crate::media::thumbnail::Thumbnailer;
use crate::ratelimit::{SendLimiter, WriteLimiter};

/// Shared state of one server.
pub struct App {
    pub engine: Engine,
    pub auth: Authenticator,
    pub config: Config,
    /// Media storage (local directory or S3), chosen once from config.
    pub media: Arc<dyn MediaStore>,
    /// The bounded pool that makes image thumbnails off the async runtime.
    pub thumbnails: Thumbnailer,
    /// Rate limit of media failure lines (an outage fails every upload and download).
    pub media_log: LogLimiter,
    pub metrics: Metrics,
    /// Flips to `true` once shutdown starts; sessions close with 1001.
    pub shutdown: watch::Receiver<bool>,
    /// Cancelled once shutdown starts: realtime sessions close with 1001.
    pub stop: CancellationToken,
    /// Realtime sessions, awaited on shutdown.
    pub sessions: TaskTracker,
    /// The runtime realtime sessions run on, when apart from the request runtime
    /// (`--realtime-threads`).
    pub realtime: Option<tokio::runtime::Handle>,
    /// Realtime connection caps (node-wide and per user), taken before each upgrade.
    pub connections: ConnectionLimits,
    /// The per-user send rate limit (`--send-rate-limit`), checked by every send surface.
    pub send_limit: Arc<SendLimiter>,
    /// The per-user limit of the other writes (`--write-rate-limit`).
    pub write_limit: Arc<WriteLimiter>,
    next_session: AtomicU64,
    /// False once shutdown starts (readiness).
    pub accepting: AtomicBool,
}

pub type AppRef = Arc<App>;

impl App {
    pub fn new(
        engine: Engine,
        auth: Authenticator,
        config: Config,
        media: Arc<dyn MediaStore>,
        metrics: Metrics,
        shutdown: watch::Receiver<bool>,
        realtime: Option<tokio::runtime::Handle>,
    ) -> AppRef {
        let connections =
            ConnectionLimits::new(config.max_connections, config.max_connections_per_user);
        let stop = CancellationToken::new();
        let send_limit = Arc::new(SendLimiter::new(config.send_rate_limit, metrics.clone()));
        send_limit.spawn_housekeeping(stop.clone());
        let write_limit = Arc::new(WriteLimiter::new(config.write_rate_limit, metrics.clone()));
        write_limit.spawn_housekeeping(stop.clone());
        Arc::new(App {
            engine,
            auth,
            config,
            media,
            thumbnails: Thumbnailer::for_this_machine(),
            media_log: LogLimiter::new(crate::media::FAILURE_LOG_EVERY),
            metrics,
            shutdown,
            stop,
            sessions: TaskTracker::new(),
            realtime,
            connections,
            send_limit,
            write_limit,
            next_session: AtomicU64::new(1),
            accepting: AtomicBool::new(true),
        })
    }

    /// Authenticates an `Authorization` header value.
    ///
    /// # Errors
    /// `Missing` without a bearer token, `Invalid` for a bad one.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<User, AuthError> {
        let token = bearer(authorization).ok_or(AuthError::Missing)?;
        self.auth.verify(token)
    }

    /// A process-unique session number.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }
}
