//! Typed configuration. Every option has one name, used three ways: the flag `--data-dir`, the
//! env var `SPACECAST_DATA_DIR`, and the key `data_dir` in the optional TOML file (`--config`).
//! Precedence: flag, then env var, then file, then default. [`ConfigArgs::validate`] checks the
//! whole, so a bad value stops the process at start with a message naming the option.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
pub use spacecast_observability::trace::OtlpProtocol;

/// Options of `spacecast serve` (and the subset `token` reads). All optional here so the file and
/// defaults can fill what flags and env vars leave unset.
#[derive(Args, Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigArgs {
    /// Address to listen on (host:port; port 0 picks a free port).
    #[arg(long, env = "SPACECAST_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded store, media and the development JWT secret.
    #[arg(long, env = "SPACECAST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HS256 secret for tokens. Default: generated once and kept in the data dir.
    #[arg(long, env = "SPACECAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file with a public key (RS256, ES256 or EdDSA) that verifies production tokens.
    #[arg(long, env = "SPACECAST_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Storage backend: `embedded` or `cql`.
    #[arg(long, env = "SPACECAST_STORE")]
    pub store: Option<String>,
    /// CQL contact points, comma-separated host:port.
    #[arg(long, env = "SPACECAST_CQL_NODES")]
    pub cql_nodes: Option<String>,
    /// CQL keyspace.
    #[arg(long, env = "SPACECAST_CQL_KEYSPACE")]
    pub cql_keyspace: Option<String>,
    /// The keyspace's replication map, used by `migrate` when it creates the keyspace.
    #[arg(long, env = "SPACECAST_CQL_REPLICATION")]
    pub cql_replication: Option<String>,
    /// NATS URL; set means cluster mode.
    #[arg(long, env = "SPACECAST_NATS_URL")]
    pub nats_url: Option<String>,
    /// This node's id, unique in the cluster: 1-64 letters, digits, `-`, `_` (default: generated).
    #[arg(long, env = "SPACECAST_NODE_ID")]
    pub node_id: Option<String>,
    /// Cluster mode: how long a space's ownership lease outlives its owner's last renewal, so
    /// about the failover time after a node dies (e.g. `1500ms`). Every node must use the same.
    #[arg(long, env = "SPACECAST_LEASE_TTL")]
    pub lease_ttl: Option<String>,
    /// Absolute base URL clients reach this server at, used to build `media_url` (default:
    /// none, and `media_url` is the relative `/api/media/<id>`; never taken from request headers).
    #[arg(long, env = "SPACECAST_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "SPACECAST_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// OTLP collector to export traces to, e.g. `http://127.0.0.1:4317` (gRPC) or
    /// `http://127.0.0.1:4318` (HTTP; `/v1/traces` is added to a bare host). Unset: traces are
    /// off, unless `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` is set
    /// (this option wins over them).
    #[arg(long, env = "SPACECAST_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport: `grpc` (default) or `http` (protobuf). Unset: `OTEL_EXPORTER_OTLP_PROTOCOL`.
    #[arg(long, env = "SPACECAST_OTLP_PROTOCOL")]
    pub otlp_protocol: Option<String>,
    /// Share of new traces exported, 0 to 1 (default 0.01). Parent-based: a request whose
    /// `traceparent` says sampled is always traced, one that says not sampled never. Unset:
    /// `OTEL_TRACES_SAMPLER_ARG`.
    #[arg(long, env = "SPACECAST_TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
    /// Largest media upload, in bytes.
    #[arg(long, env = "SPACECAST_MAX_MEDIA_BYTES")]
    pub max_media_bytes: Option<usize>,
    /// Largest JSON request body, in bytes.
    #[arg(long, env = "SPACECAST_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Longest message content, in characters.
    #[arg(long, env = "SPACECAST_MAX_CONTENT_CHARS")]
    pub max_content_chars: Option<usize>,
    /// Commands admitted per space and not yet answered before sends get 503 `overloaded`.
    #[arg(long, env = "SPACECAST_MAX_INFLIGHT_PER_SPACE")]
    pub max_inflight_per_space: Option<usize>,
    /// Idle time after which a space actor is stopped (e.g. `5m`).
    #[arg(long, env = "SPACECAST_SPACE_IDLE_TIMEOUT")]
    pub space_idle_timeout: Option<String>,
    /// Group commits (batches of events) a realtime subscriber may fall behind before it is
    /// closed as slow (4008).
    #[arg(long, env = "SPACECAST_SUBSCRIBER_QUEUE")]
    pub subscriber_queue: Option<usize>,
    /// Open realtime connections allowed; beyond it, upgrades get 503.
    #[arg(long, env = "SPACECAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Bytes all space actors' message caches may hold together.
    #[arg(long, env = "SPACECAST_MESSAGE_CACHE_BYTES")]
    pub message_cache_bytes: Option<usize>,
    /// Messages one user may send per minute, on every surface (a burst of this many, then one
    /// every `60 s / limit`); beyond it, 429 `rate_limited` + `Retry-After`. `0` = unlimited.
    /// Counted per node (see the README's "Rate limits").
    #[arg(long, env = "SPACECAST_SEND_RATE_LIMIT")]
    pub send_rate_limit: Option<u32>,
    /// Other writes one user may make per minute: reactions, edits, redactions, deletes, member
    /// changes, joins, spaces created or changed (a burst of this many, then one every
    /// `60 s / limit`); beyond it, 429 `rate_limited` + `Retry-After`. `0` = unlimited.
    #[arg(long, env = "SPACECAST_WRITE_RATE_LIMIT")]
    pub write_rate_limit: Option<u32>,
    /// How long after sending a message its author may edit it (e.g. `24h`, `15m`).
    #[arg(long, env = "SPACECAST_EDIT_WINDOW")]
    pub edit_window: Option<String>,
    /// Open realtime connections allowed per user; beyond it, upgrades get 429.
    #[arg(long, env = "SPACECAST_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<usize>,
    /// Spaces one realtime session may have joined at once; beyond it, `join` gets an error.
    #[arg(long, env = "SPACECAST_MAX_SPACES_PER_SESSION")]
    pub max_spaces_per_session: Option<usize>,
    /// Interval of the stream's keep-alive pings; a pong must come back within one interval
    /// (e.g. `25s`).
    #[arg(long, env = "SPACECAST_WS_PING_INTERVAL")]
    pub ws_ping_interval: Option<String>,
    /// How long a realtime session holds its first ready event before writing, to send more
    /// events in the same socket write (e.g. `2ms`; `0s`, the default, writes at once).
    #[arg(long, env = "SPACECAST_WS_WRITE_DELAY")]
    pub ws_write_delay: Option<String>,
    /// A realtime session with no client frame for this long is offline in presence (it stays
    /// connected; e.g. `60s`, two missed 30 s heartbeats).
    #[arg(long, env = "SPACECAST_PRESENCE_TIMEOUT")]
    pub presence_timeout: Option<String>,
    /// A realtime session with no activity (a frame other than `heartbeat` / `presence`) for
    /// this long is idle in presence (e.g. `5m`).
    #[arg(long, env = "SPACECAST_PRESENCE_IDLE_AFTER")]
    pub presence_idle_after: Option<String>,
    /// Spaces with more subscribers than this get a periodic `presence_count` instead of
    /// per-user `presence` events.
    #[arg(long, env = "SPACECAST_PRESENCE_MAX_SUBSCRIBERS")]
    pub presence_max_subscribers: Option<usize>,
    /// How often a space above `--presence-max-subscribers` gets its `presence_count` (e.g. `10s`).
    #[arg(long, env = "SPACECAST_PRESENCE_COUNT_INTERVAL")]
    pub presence_count_interval: Option<String>,
    /// Threads of the runtime that runs realtime sessions (fan-out), apart from the one serving
    /// HTTP requests, so fan-out to many subscribers cannot delay requests; 0 runs sessions on
    /// the request runtime. Default: one per CPU this process may run on.
    #[arg(long, env = "SPACECAST_REALTIME_THREADS")]
    pub realtime_threads: Option<usize>,
    /// Longest a graceful shutdown waits for in-flight work (e.g. `20s`).
    #[arg(long, env = "SPACECAST_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<String>,
    /// Longest a client may take to send a complete request head, counted from the connection's
    /// accept or from the first byte of a later request (e.g. `10s`).
    #[arg(long, env = "SPACECAST_HTTP_HEADER_TIMEOUT")]
    pub http_header_timeout: Option<String>,
    /// Longest a kept-alive HTTP connection may stay open with no request in flight (e.g. `60s`).
    #[arg(long, env = "SPACECAST_HTTP_IDLE_TIMEOUT")]
    pub http_idle_timeout: Option<String>,
    /// Open HTTP connections allowed (WebSockets count in `max_connections` instead); beyond it,
    /// new connections get a 503 `overloaded` and are closed.
    #[arg(long, env = "SPACECAST_MAX_HTTP_CONNECTIONS")]
    pub max_http_connections: Option<usize>,
    /// Where media files live: `local` (under the data dir; one node) or `s3` (an S3-compatible
    /// bucket every node shares; needs `s3_bucket`, `s3_endpoint` and credentials).
    #[arg(long, env = "SPACECAST_MEDIA_STORE")]
    pub media_store: Option<String>,
    /// S3 bucket for media (`media_store = s3`); it must exist.
    #[arg(long, env = "SPACECAST_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 endpoint URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:18333`
    /// (requests are path-style: `<endpoint>/<bucket>/<key>`).
    #[arg(long, env = "SPACECAST_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region, used in request signatures (default `us-east-1`).
    #[arg(long, env = "SPACECAST_S3_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id.
    #[arg(long, env = "SPACECAST_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key. Prefer the env var or the config file: a flag shows in `ps`.
    #[arg(long, env = "SPACECAST_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<Secret>,
    /// Key prefix of every media object (`<prefix>/media/<id>`), e.g. to share a bucket.
    #[arg(long, env = "SPACECAST_S3_PREFIX")]
    pub s3_prefix: Option<String>,
    /// Development only: the web console at `/console` offers a button that mints a token for
    /// any username (`POST /console/dev-login`). Needs the generated development secret: the
    /// server refuses to start with it and `jwt_secret`, `jwt_public_key` or `nats_url`.
    /// `--console-dev-login` or `--console-dev-login=false`; env `true`/`false` (or 1/0).
    #[arg(
        long,
        env = "SPACECAST_CONSOLE_DEV_LOGIN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub console_dev_login: Option<bool>,
    /// Message search (`GET /v1/search/messages`, `…/messages/search`): `on` (the default)
    /// keeps a full-text index in `<data_dir>/search` fed by every commit of the cluster; `off`
    /// keeps none, and the search routes answer 400 `search_disabled`.
    #[arg(long, env = "SPACECAST_SEARCH")]
    pub search: Option<String>,
}

/// A credential: shown as `"***"` by `Debug`, so it never reaches a log line or a panic message;
/// [`Secret::expose`] hands it to the one client that needs it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the client that authenticates with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// Which store backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Embedded,
    Cql,
}

/// Which media backend (see `crate::media`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaStoreKind {
    /// `<data_dir>/media`, served by this node only.
    Local,
    /// An S3-compatible bucket shared by every node.
    S3,
}

/// The S3 media settings, complete and checked (present iff `media_store = s3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// `http://` or `https://` URL, without a path.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// Key prefix without leading or trailing `/`; `None` for none.
    pub prefix: Option<String>,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<PathBuf>,
    pub store: StoreKind,
    pub cql_nodes: Vec<String>,
    pub cql_keyspace: String,
    pub cql_replication: String,
    pub nats_url: Option<String>,
    pub node_id: String,
    pub lease_ttl: Duration,
    pub public_url: Option<String>,
    pub json_logs: bool,
    /// `--otlp-endpoint` (trimmed, non-empty).
    pub otlp_endpoint: Option<String>,
    /// `--otlp-protocol`; `None`: the `OTEL_*` variable, else gRPC.
    pub otlp_protocol: Option<OtlpProtocol>,
    /// `--trace-sample-ratio`; `None`: the `OTEL_*` variable, else 0.01.
    pub trace_sample_ratio: Option<f64>,
    /// Set by the binary once the exporter is installed: the share of new traces the edge
    /// samples (`trace::sample_request`), `None` when no spans are exported.
    pub exported_trace_ratio: Option<f64>,
    pub max_media_bytes: usize,
    pub max_body_bytes: usize,
    pub max_content_chars: usize,
    pub max_inflight_per_space: usize,
    pub space_idle_timeout: Duration,
    pub subscriber_queue: usize,
    pub max_connections: usize,
    pub message_cache_bytes: usize,
    pub shutdown_timeout: Duration,
    pub max_connections_per_user: usize,
    /// Sends per user per minute; 0 = unlimited.
    pub send_rate_limit: u32,
    /// Other writes per user per minute; 0 = unlimited.
    pub write_rate_limit: u32,
    /// How long after `created_at` a message may be edited.
    pub edit_window: Duration,
    pub max_spaces_per_session: usize,
    pub ws_ping_interval: Duration,
    pub ws_write_delay: Duration,
    /// presence (issue 12): `--presence-*`.
    pub presence: spacecast_engine::presence::PresenceConfig,
    pub realtime_threads: usize,
    pub http_header_timeout: Duration,
    pub http_idle_timeout: Duration,
    pub max_http_connections: usize,
    pub media_store: MediaStoreKind,
    /// Set iff `media_store` is [`MediaStoreKind::S3`].
    pub s3: Option<S3Settings>,
    /// `POST /console/dev-login` mints tokens (development only; see [`ConfigArgs`]). True only
    /// with the generated development secret: [`ConfigArgs::validate`] refuses the rest.
    pub console_dev_login: bool,
    /// Message search runs on this node (see [`ConfigArgs`]).
    pub search: bool,
}

/// A configuration problem, naming the option.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// The largest `ws_write_delay` accepted.
pub const MAX_WS_WRITE_DELAY: Duration = Duration::from_millis(100);
/// Realtime runtime threads by default: one per CPU this process may run on (its affinity, so
/// `taskset -c 0` gives one), like the request runtime.
fn default_realtime_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn duration(name: &str, v: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s.trim())
            .map_err(|e| ConfigError(format!("{name} = {s:?}: {e} (use e.g. 30s, 5m)"))),
    }
}

/// `Some(d)` unless `d` is zero (a zero timeout would close every connection at once).
fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

impl ConfigArgs {
    /// Fills unset options from the TOML file at `path`.
    ///
    /// # Errors
    /// The file is unreadable, not TOML, or has an unknown key.
    pub fn merge_file(mut self, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
        let file: ConfigArgs = toml::from_str(&text)
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = file.$f; } )* };
        }
        fill!(
            listen,
            data_dir,
            jwt_secret,
            jwt_public_key,
            store,
            cql_nodes,
            cql_keyspace,
            cql_replication,
            nats_url,
            node_id,
            lease_ttl,
            public_url,
            log_format,
            otlp_endpoint,
            otlp_protocol,
            trace_sample_ratio,
            max_media_bytes,
            max_body_bytes,
            max_content_chars,
            max_inflight_per_space,
            space_idle_timeout,
            subscriber_queue,
            max_connections,
            message_cache_bytes,
            shutdown_timeout,
            max_connections_per_user,
            send_rate_limit,
            write_rate_limit,
            edit_window,
            max_spaces_per_session,
            ws_ping_interval,
            ws_write_delay,
            presence_timeout,
            presence_idle_after,
            presence_max_subscribers,
            presence_count_interval,
            realtime_threads,
            http_header_timeout,
            http_idle_timeout,
            max_http_connections,
            media_store,
            s3_bucket,
            s3_endpoint,
            s3_region,
            s3_access_key_id,
            s3_secret_access_key,
            s3_prefix,
            console_dev_login,
            search
        );
        Ok(self)
    }

    /// Applies defaults and checks every option.
    ///
    /// # Errors
    /// The first invalid option, by name.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let store = match self.store.as_deref().map(str::trim) {
            None | Some("embedded") => StoreKind::Embedded,
            Some("cql") => StoreKind::Cql,
            Some(other) => {
                return Err(ConfigError(format!(
                    "store = {other:?}: use `embedded` or `cql`"
                )));
            }
        };
        let search = match self.search.as_deref().map(str::trim) {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(ConfigError(format!(
                    "search = {other:?}: use `on` or `off`"
                )));
            }
        };
        let json_logs = match self.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError(format!(
                    "log_format = {other:?}: use `text` or `json`"
                )));
            }
        };
        let otlp_protocol = match self.otlp_protocol.as_deref().map(str::trim) {
            None => None,
            Some(p) => Some(OtlpProtocol::parse(p).ok_or_else(|| {
                ConfigError(format!("otlp_protocol = {p:?}: use `grpc` or `http`"))
            })?),
        };
        if let Some(r) = self.trace_sample_ratio
            && !(0.0..=1.0).contains(&r)
        {
            return Err(ConfigError(format!(
                "trace_sample_ratio = {r}: use a number from 0 to 1 (0.01 = 1 % of new traces)"
            )));
        }
        if let Some(s) = &self.jwt_secret
            && s.len() < 16
        {
            return Err(ConfigError("jwt_secret must be at least 16 bytes".into()));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError(format!(
                "public_url = {url:?}: must start with http:// or https://"
            )));
        }
        let (media_store, s3) = self.media_settings()?;
        let positive =
            |name: &str, v: Option<usize>, default: usize| -> Result<usize, ConfigError> {
                match v {
                    Some(0) => Err(ConfigError(format!("{name} must be greater than 0"))),
                    Some(n) => Ok(n),
                    None => Ok(default),
                }
            };
        let config = Config {
            listen: self
                .listen
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid literal")),
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            jwt_secret: self.jwt_secret,
            jwt_public_key: self.jwt_public_key,
            store,
            cql_nodes: self
                .cql_nodes
                .as_deref()
                .unwrap_or("127.0.0.1:9042")
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            cql_keyspace: self.cql_keyspace.unwrap_or_else(|| "spacecast".into()),
            cql_replication: self
                .cql_replication
                .unwrap_or_else(|| "{'class': 'SimpleStrategy', 'replication_factor': 1}".into()),
            nats_url: self.nats_url.filter(|s| !s.trim().is_empty()),
            node_id: self.node_id.unwrap_or_else(|| {
                format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
            }),
            lease_ttl: duration("lease_ttl", self.lease_ttl, Duration::from_millis(1500))?,
            public_url: self.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            json_logs,
            otlp_endpoint: self
                .otlp_endpoint
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            otlp_protocol,
            trace_sample_ratio: self.trace_sample_ratio,
            exported_trace_ratio: None,
            max_media_bytes: positive("max_media_bytes", self.max_media_bytes, 10 * 1024 * 1024)?,
            max_body_bytes: positive("max_body_bytes", self.max_body_bytes, 256 * 1024)?,
            max_content_chars: positive("max_content_chars", self.max_content_chars, 5000)?,
            max_inflight_per_space: positive(
                "max_inflight_per_space",
                self.max_inflight_per_space,
                4096,
            )?,
            space_idle_timeout: duration(
                "space_idle_timeout",
                self.space_idle_timeout,
                Duration::from_secs(300),
            )?,
            subscriber_queue: positive("subscriber_queue", self.subscriber_queue, 1024)?,
            max_connections: positive("max_connections", self.max_connections, 100_000)?,
            message_cache_bytes: positive(
                "message_cache_bytes",
                self.message_cache_bytes,
                64 * 1024 * 1024,
            )?,
            shutdown_timeout: duration(
                "shutdown_timeout",
                self.shutdown_timeout,
                Duration::from_secs(20),
            )?,
            max_connections_per_user: positive(
                "max_connections_per_user",
                self.max_connections_per_user,
                32,
            )?,
            send_rate_limit: self.send_rate_limit.unwrap_or(60),
            write_rate_limit: self.write_rate_limit.unwrap_or(300),
            edit_window: duration(
                "edit_window",
                self.edit_window,
                Duration::from_secs(24 * 60 * 60),
            )?,
            max_spaces_per_session: positive(
                "max_spaces_per_session",
                self.max_spaces_per_session,
                100,
            )?,
            ws_ping_interval: duration(
                "ws_ping_interval",
                self.ws_ping_interval,
                Duration::from_secs(25),
            )?,
            ws_write_delay: duration("ws_write_delay", self.ws_write_delay, Duration::ZERO)?,
            presence: spacecast_engine::presence::PresenceConfig {
                timeout: duration(
                    "presence_timeout",
                    self.presence_timeout,
                    Duration::from_secs(60),
                )?,
                idle_after: duration(
                    "presence_idle_after",
                    self.presence_idle_after,
                    Duration::from_secs(5 * 60),
                )?,
                max_subscribers: self.presence_max_subscribers.unwrap_or(1_000),
                count_interval: duration(
                    "presence_count_interval",
                    self.presence_count_interval,
                    Duration::from_secs(10),
                )?,
                ..Default::default()
            },
            realtime_threads: self
                .realtime_threads
                .unwrap_or_else(default_realtime_threads),
            http_header_timeout: nonzero(duration(
                "http_header_timeout",
                self.http_header_timeout,
                Duration::from_secs(10),
            )?)
            .ok_or_else(|| ConfigError("http_header_timeout must be greater than 0".into()))?,
            http_idle_timeout: nonzero(duration(
                "http_idle_timeout",
                self.http_idle_timeout,
                Duration::from_secs(60),
            )?)
            .ok_or_else(|| ConfigError("http_idle_timeout must be greater than 0".into()))?,
            // 10,000: far above what one node's REST clients need at once (Space7 requests are
            // short, and a proxy in front pools connections), yet its worst case (each holding
            // hyper's read buffer) stays within a few hundred MB.
            max_http_connections: positive(
                "max_http_connections",
                self.max_http_connections,
                10_000,
            )?,
            media_store,
            s3,
            console_dev_login: self.console_dev_login.unwrap_or(false),
            search,
        };
        if config.console_dev_login {
            check_dev_login(&config)?;
        }
        if config.nats_url.is_some() && config.store == StoreKind::Embedded {
            return Err(ConfigError(
                "nats_url (cluster mode) needs store = cql: the embedded store lives on one node's disk, so a cluster cannot share it; run a single node without nats_url, or use --store cql".into(),
            ));
        }
        if !spacecast_engine::bus::nats::valid_node_id(&config.node_id) {
            return Err(ConfigError(format!(
                "node_id = {:?}: use 1-64 letters, digits, - and _",
                config.node_id
            )));
        }
        if !(Duration::from_millis(300)..=Duration::from_secs(60)).contains(&config.lease_ttl) {
            return Err(ConfigError(format!(
                "lease_ttl = {:?}: use 300ms to 60s",
                config.lease_ttl
            )));
        }
        if config.ws_ping_interval < Duration::from_millis(100) {
            return Err(ConfigError(format!(
                "ws_ping_interval = {:?}: must be at least 100ms",
                config.ws_ping_interval
            )));
        }
        let p = &config.presence;
        for (name, d) in [
            ("presence_timeout", p.timeout),
            ("presence_idle_after", p.idle_after),
            ("presence_count_interval", p.count_interval),
        ] {
            if d < Duration::from_millis(100) {
                return Err(ConfigError(format!(
                    "{name} = {d:?}: must be at least 100ms"
                )));
            }
        }
        if config.ws_write_delay > MAX_WS_WRITE_DELAY {
            return Err(ConfigError(format!(
                "ws_write_delay = {:?}: at most {MAX_WS_WRITE_DELAY:?} (it adds to every delivery's latency)",
                config.ws_write_delay
            )));
        }
        if config.realtime_threads > 1024 {
            return Err(ConfigError(format!(
                "realtime_threads = {}: at most 1024",
                config.realtime_threads
            )));
        }
        if config.store == StoreKind::Cql {
            if config.cql_nodes.is_empty() {
                return Err(ConfigError("cql_nodes: give at least one host:port".into()));
            }
            if !spacecast_engine::store::cql::schema::valid_keyspace(&config.cql_keyspace) {
                return Err(ConfigError(format!(
                    "cql_keyspace = {:?}: use lowercase letters, digits and _ (at most 48), starting with a letter",
                    config.cql_keyspace
                )));
            }
        }
        Ok(config)
    }
}

impl ConfigArgs {
    /// The media backend and, for `s3`, its complete settings.
    ///
    /// # Errors
    /// An unknown `media_store`; `s3` without a bucket, an endpoint or credentials; a bad bucket
    /// name, endpoint or prefix; `s3_*` options with the local media store (they would be
    /// ignored, and media would silently stay on one node).
    fn media_settings(&self) -> Result<(MediaStoreKind, Option<S3Settings>), ConfigError> {
        let trimmed = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let kind = match self.media_store.as_deref().map(str::trim) {
            None | Some("local") => MediaStoreKind::Local,
            Some("s3") => MediaStoreKind::S3,
            Some(other) => {
                return Err(ConfigError(format!(
                    "media_store = {other:?}: use `local` or `s3`"
                )));
            }
        };
        let (bucket, endpoint) = (trimmed(&self.s3_bucket), trimmed(&self.s3_endpoint));
        if kind == MediaStoreKind::Local {
            if let Some(name) = [
                ("s3_bucket", bucket.is_some()),
                ("s3_endpoint", endpoint.is_some()),
                ("s3_prefix", self.s3_prefix.is_some()),
                ("s3_access_key_id", self.s3_access_key_id.is_some()),
                ("s3_secret_access_key", self.s3_secret_access_key.is_some()),
            ]
            .iter()
            .find_map(|(name, set)| set.then_some(*name))
            {
                return Err(ConfigError(format!(
                    "{name} is set but media_store is `local`: add --media-store s3 \
                     (SPACECAST_MEDIA_STORE=s3) to keep media in S3, or unset the s3_* options"
                )));
            }
            return Ok((kind, None));
        }
        let bucket = bucket.ok_or_else(|| {
            ConfigError(
                "media_store = s3 needs s3_bucket (--s3-bucket / SPACECAST_S3_BUCKET)".into(),
            )
        })?;
        if !valid_bucket(&bucket) {
            return Err(ConfigError(format!(
                "s3_bucket = {bucket:?}: 3-63 lowercase letters, digits, '.' and '-', starting \
                 and ending with a letter or digit"
            )));
        }
        let endpoint = endpoint.ok_or_else(|| {
            ConfigError(
                "media_store = s3 needs s3_endpoint (--s3-endpoint / SPACECAST_S3_ENDPOINT), \
                 e.g. https://s3.us-east-1.amazonaws.com"
                    .into(),
            )
        })?;
        let url = url::Url::parse(&endpoint)
            .map_err(|e| ConfigError(format!("s3_endpoint = {endpoint:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || !url.path().trim_matches('/').is_empty()
            || url.query().is_some()
        {
            return Err(ConfigError(format!(
                "s3_endpoint = {endpoint:?}: use http(s)://host[:port] with no path \
                 (the bucket goes in s3_bucket)"
            )));
        }
        let region = trimmed(&self.s3_region).unwrap_or_else(|| "us-east-1".to_owned());
        let access_key_id = trimmed(&self.s3_access_key_id);
        let secret = self
            .s3_secret_access_key
            .clone()
            .filter(|s| !s.expose().is_empty());
        let (Some(access_key_id), Some(secret_access_key)) = (access_key_id, secret) else {
            return Err(ConfigError(
                "media_store = s3 needs s3_access_key_id and s3_secret_access_key \
                 (SPACECAST_S3_ACCESS_KEY_ID / SPACECAST_S3_SECRET_ACCESS_KEY)"
                    .into(),
            ));
        };
        let prefix = match self
            .s3_prefix
            .as_deref()
            .map(|p| p.trim().trim_matches('/'))
        {
            None | Some("") => None,
            Some(p) => {
                let ok = p.split('/').all(|seg| {
                    !seg.is_empty()
                        && seg != "."
                        && seg != ".."
                        && seg.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')
                        })
                });
                if !ok {
                    return Err(ConfigError(format!(
                        "s3_prefix = {p:?}: '/'-separated segments of letters, digits, \
                         '-', '_', '.', '='"
                    )));
                }
                Some(p.to_owned())
            }
        };
        Ok((
            kind,
            Some(S3Settings {
                bucket,
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                region,
                access_key_id,
                secret_access_key,
                prefix,
            }),
        ))
    }
}

/// `console_dev_login` mints tokens with the secret the server generated into its data dir, so it
/// is refused wherever that secret is not the one in use: with a configured `jwt_secret` (tokens
/// would be signed with a production secret by anyone who reaches the page), with a
/// `jwt_public_key` (the issuer's tokens are the real ones), and in a cluster (each node would
/// mint with its own generated secret, and the others would refuse those tokens).
fn check_dev_login(config: &Config) -> Result<(), ConfigError> {
    let conflict = [
        ("jwt_secret", config.jwt_secret.is_some()),
        ("jwt_public_key", config.jwt_public_key.is_some()),
        ("nats_url", config.nats_url.is_some()),
    ]
    .into_iter()
    .find_map(|(name, set)| set.then_some(name));
    match conflict {
        Some(name) => Err(ConfigError(format!(
            "console_dev_login is for development with the generated secret of the data dir, \
             but {name} is set: unset {name}, or turn console_dev_login off (it would let anyone \
             who reaches /console mint tokens)"
        ))),
        None => Ok(()),
    }
}

/// S3 bucket naming rules (the subset every S3-compatible store accepts).
fn valid_bucket(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let c = ConfigArgs::default().validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.store, StoreKind::Embedded);
        assert!(c.jwt_secret.is_none());
        assert!(c.node_id.starts_with("node-"));
        assert_eq!(c.http_header_timeout, Duration::from_secs(10));
        assert_eq!(c.http_idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_http_connections, 10_000);
    }

    #[test]
    fn cluster_mode_needs_the_cql_store_a_valid_node_id_and_a_sane_lease() {
        let cluster = |store: &str, node: &str, ttl: Option<&str>| ConfigArgs {
            store: Some(store.into()),
            nats_url: Some("nats://127.0.0.1:4222".into()),
            node_id: Some(node.into()),
            lease_ttl: ttl.map(Into::into),
            ..Default::default()
        };
        let e = cluster("embedded", "n1", None)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs store = cql"), "{e}");
        let c = cluster("cql", "n1", None).validate().unwrap();
        assert_eq!(c.lease_ttl, Duration::from_millis(1500));
        assert_eq!(c.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
        for bad in ["a.b", "", "x y", "n*"] {
            let e = cluster("cql", bad, None)
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains("node_id"), "{bad}: {e}");
        }
        for bad in ["10ms", "5m"] {
            let e = cluster("cql", "n1", Some(bad))
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains("lease_ttl"), "{bad}: {e}");
        }
    }

    #[test]
    fn http_limits_must_be_positive() {
        for args in [
            ConfigArgs {
                http_header_timeout: Some("0s".into()),
                ..Default::default()
            },
            ConfigArgs {
                http_idle_timeout: Some("0s".into()),
                ..Default::default()
            },
            ConfigArgs {
                max_http_connections: Some(0),
                ..Default::default()
            },
        ] {
            let e = args.validate().unwrap_err().to_string();
            assert!(e.contains("http"), "{e}");
        }
    }

    #[test]
    fn the_file_fills_only_what_flags_left_unset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spacecast.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\ndata_dir = \"/tmp/x\"\nmax_content_chars = 10\n",
        )
        .unwrap();
        let args = ConfigArgs {
            data_dir: Some("/flag".into()),
            ..Default::default()
        };
        let c = args.merge_file(&path).unwrap().validate().unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.data_dir, PathBuf::from("/flag"));
        assert_eq!(c.max_content_chars, 10);
    }

    #[test]
    fn bad_values_name_the_option() {
        let e = ConfigArgs {
            store: Some("postgres".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("store"), "{e}");
        let e = ConfigArgs {
            shutdown_timeout: Some("soon".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("shutdown_timeout"), "{e}");
        let e = ConfigArgs {
            max_body_bytes: Some(0),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("max_body_bytes"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "no_such_option = 1\n").unwrap();
        assert!(ConfigArgs::default().merge_file(&path).is_err());
    }

    #[test]
    fn delivery_options_have_defaults_and_bounds() {
        let c = ConfigArgs::default().validate().unwrap();
        assert_eq!(
            c.ws_write_delay,
            Duration::ZERO,
            "no write delay by default"
        );
        assert!(c.realtime_threads >= 1, "a realtime runtime by default");
        let c = ConfigArgs {
            ws_write_delay: Some("2ms".into()),
            realtime_threads: Some(0),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(
            (c.ws_write_delay, c.realtime_threads),
            (Duration::from_millis(2), 0)
        );
        for (args, name) in [
            (
                ConfigArgs {
                    ws_write_delay: Some("1s".into()),
                    ..Default::default()
                },
                "ws_write_delay",
            ),
            (
                ConfigArgs {
                    ws_write_delay: Some("soon".into()),
                    ..Default::default()
                },
                "ws_write_delay",
            ),
            (
                ConfigArgs {
                    realtime_threads: Some(5000),
                    ..Default::default()
                },
                "realtime_threads",
            ),
        ] {
            let e = args.validate().unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn stream_limits_have_defaults_and_refuse_zero() {
        let c = ConfigArgs::default().validate().unwrap();
        assert_eq!(c.max_connections_per_user, 32);
        assert_eq!(c.max_spaces_per_session, 100);
        assert_eq!(c.ws_ping_interval, Duration::from_secs(25));
        for args in [
            ConfigArgs {
                max_connections_per_user: Some(0),
                ..Default::default()
            },
            ConfigArgs {
                max_spaces_per_session: Some(0),
                ..Default::default()
            },
            ConfigArgs {
                ws_ping_interval: Some("0s".into()),
                ..Default::default()
            },
        ] {
            assert!(args.validate().is_err());
        }
        let e = ConfigArgs {
            ws_ping_interval: Some("often".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("ws_ping_interval"), "{e}");
    }

    fn s3_args() -> ConfigArgs {
        ConfigArgs {
            media_store: Some("s3".into()),
            s3_bucket: Some("media-bucket".into()),
            s3_endpoint: Some("http://127.0.0.1:18333/".into()),
            s3_access_key_id: Some("AKID".into()),
            s3_secret_access_key: Some(Secret::from("s3cr3t-value".to_owned())),
            ..Default::default()
        }
    }

    #[test]
    fn media_store_defaults_to_local_and_s3_needs_its_settings() {
        let c = ConfigArgs::default().validate().unwrap();
        assert_eq!((c.media_store, c.s3), (MediaStoreKind::Local, None));
        let c = s3_args().validate().unwrap();
        assert_eq!(c.media_store, MediaStoreKind::S3);
        let s3 = c.s3.clone().unwrap();
        assert_eq!(s3.endpoint, "http://127.0.0.1:18333");
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(s3.prefix, None);
        for (args, name) in [
            (
                ConfigArgs {
                    s3_bucket: None,
                    ..s3_args()
                },
                "s3_bucket",
            ),
            (
                ConfigArgs {
                    s3_endpoint: Some("  ".into()),
                    ..s3_args()
                },
                "s3_endpoint",
            ),
            (
                ConfigArgs {
                    s3_endpoint: Some("ftp://x".into()),
                    ..s3_args()
                },
                "s3_endpoint",
            ),
            (
                ConfigArgs {
                    s3_endpoint: Some("http://h:1/bucket".into()),
                    ..s3_args()
                },
                "s3_endpoint",
            ),
            (
                ConfigArgs {
                    s3_bucket: Some("Bad_Bucket".into()),
                    ..s3_args()
                },
                "s3_bucket",
            ),
            (
                ConfigArgs {
                    s3_secret_access_key: None,
                    ..s3_args()
                },
                "s3_secret_access_key",
            ),
            (
                ConfigArgs {
                    s3_prefix: Some("a/../b".into()),
                    ..s3_args()
                },
                "s3_prefix",
            ),
            (
                ConfigArgs {
                    media_store: Some("disk".into()),
                    ..Default::default()
                },
                "media_store",
            ),
            (
                ConfigArgs {
                    s3_bucket: Some("media-bucket".into()),
                    ..Default::default()
                },
                "s3_bucket",
            ),
        ] {
            let e = args.validate().unwrap_err().to_string();
            assert!(e.contains(name), "{name}: {e}");
        }
        let c = ConfigArgs {
            s3_prefix: Some("/tenant-1/eu/".into()),
            s3_region: Some("eu-west-1".into()),
            ..s3_args()
        }
        .validate()
        .unwrap();
        let s3 = c.s3.unwrap();
        assert_eq!(s3.prefix.as_deref(), Some("tenant-1/eu"));
        assert_eq!(s3.region, "eu-west-1");
    }

    #[test]
    fn the_s3_secret_never_shows_in_debug_output() {
        let args = s3_args();
        let config = args.clone().validate().unwrap();
        for shown in [format!("{args:?}"), format!("{config:?}")] {
            assert!(!shown.contains("s3cr3t-value"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(
            config.s3.unwrap().secret_access_key.expose(),
            "s3cr3t-value"
        );
    }

    #[test]
    fn search_is_on_by_default_and_only_on_or_off() {
        assert!(ConfigArgs::default().validate().unwrap().search);
        let with = |v: &str| {
            ConfigArgs {
                search: Some(v.into()),
                ..Default::default()
            }
            .validate()
        };
        assert!(with("on").unwrap().search);
        assert!(!with(" off ").unwrap().search);
        assert!(with("yes").unwrap_err().to_string().contains("search"));
    }

    #[test]
    fn console_dev_login_is_off_by_default_and_needs_the_generated_secret() {
        assert!(!ConfigArgs::default().validate().unwrap().console_dev_login);
        let on = ConfigArgs {
            console_dev_login: Some(true),
            ..Default::default()
        };
        assert!(on.clone().validate().unwrap().console_dev_login);
        for (args, name) in [
            (
                ConfigArgs {
                    jwt_secret: Some("a-configured-secret-0123".into()),
                    ..on.clone()
                },
                "jwt_secret",
            ),
            (
                ConfigArgs {
                    jwt_public_key: Some("/etc/spacecast/issuer.pem".into()),
                    ..on.clone()
                },
                "jwt_public_key",
            ),
            (
                ConfigArgs {
                    store: Some("cql".into()),
                    nats_url: Some("nats://127.0.0.1:4222".into()),
                    node_id: Some("n1".into()),
                    ..on.clone()
                },
                "nats_url",
            ),
        ] {
            let e = args.validate().unwrap_err().to_string();
            assert!(
                e.contains("console_dev_login") && e.contains(name),
                "{name}: {e}"
            );
        }
        // Off, the same settings are fine.
        let off = ConfigArgs {
            console_dev_login: Some(false),
            jwt_secret: Some("a-configured-secret-0123".into()),
            ..Default::default()
        };
        assert!(!off.validate().unwrap().console_dev_login);
    }

    #[test]
    fn console_dev_login_is_a_flag_an_env_var_and_a_file_key() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            args: ConfigArgs,
        }
        let parse = |argv: &[&str]| Cmd::try_parse_from(argv).map(|c| c.args.console_dev_login);
        assert_eq!(parse(&["x", "--console-dev-login"]).unwrap(), Some(true));
        assert_eq!(
            parse(&["x", "--console-dev-login=false"]).unwrap(),
            Some(false)
        );
        assert!(parse(&["x", "--console-dev-login=maybe"]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "console_dev_login = true\n").unwrap();
        let c = ConfigArgs::default().merge_file(&path).unwrap();
        assert_eq!(c.console_dev_login, Some(true));
    }

    #[test]
    fn s3_options_come_from_the_file_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "media_store = \"s3\"\ns3_bucket = \"b-1\"\ns3_endpoint = \"https://s3.example\"\n\
             s3_access_key_id = \"k\"\ns3_secret_access_key = \"s\"\ns3_prefix = \"p\"\n",
        )
        .unwrap();
        let c = ConfigArgs::default()
            .merge_file(&path)
            .unwrap()
            .validate()
            .unwrap();
        let s3 = c.s3.unwrap();
        assert_eq!(
            (
                s3.bucket.as_str(),
                s3.endpoint.as_str(),
                s3.prefix.as_deref()
            ),
            ("b-1", "https://s3.example", Some("p"))
        );
        assert_eq!(s3.secret_access_key.expose(), "s");
    }

    #[test]
    fn send_rate_limit_and_edit_window_have_defaults_and_come_from_the_file() {
        let c = ConfigArgs::default().validate().unwrap();
        assert_eq!(c.send_rate_limit, 60);
        assert_eq!(c.write_rate_limit, 300);
        assert_eq!(c.edit_window, Duration::from_secs(24 * 60 * 60));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "send_rate_limit = 0\nedit_window = \"15m\"\n").unwrap();
        let c = ConfigArgs::default()
            .merge_file(&path)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.send_rate_limit, 0, "0 = unlimited");
        assert_eq!(c.edit_window, Duration::from_secs(15 * 60));
        let e = ConfigArgs {
            edit_window: Some("a day".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("edit_window"), "{e}");
    }

    #[test]
    fn trace_options_are_flags_env_vars_and_file_keys_and_are_checked() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            args: ConfigArgs,
        }
        let c = ConfigArgs::default().validate().unwrap();
        assert_eq!(
            (c.otlp_endpoint, c.otlp_protocol, c.trace_sample_ratio),
            (None, None, None),
            "off by default"
        );
        let args = Cmd::try_parse_from([
            "x",
            "--otlp-endpoint",
            " http://127.0.0.1:4318 ",
            "--otlp-protocol",
            "http",
            "--trace-sample-ratio",
            "1",
        ])
        .unwrap()
        .args;
        let c = args.validate().unwrap();
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
        assert_eq!(c.otlp_protocol, Some(OtlpProtocol::Http));
        assert_eq!(c.trace_sample_ratio, Some(1.0));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "otlp_endpoint = \"http://c:4317\"\notlp_protocol = \"grpc\"\ntrace_sample_ratio = 0.25\n",
        )
        .unwrap();
        let c = ConfigArgs::default()
            .merge_file(&path)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://c:4317"));
        assert_eq!(c.otlp_protocol, Some(OtlpProtocol::Grpc));
        assert_eq!(c.trace_sample_ratio, Some(0.25));
        for (bad, key) in [
            (
                ConfigArgs {
                    otlp_protocol: Some("thrift".into()),
                    ..Default::default()
                },
                "otlp_protocol",
            ),
            (
                ConfigArgs {
                    trace_sample_ratio: Some(1.5),
                    ..Default::default()
                },
                "trace_sample_ratio",
            ),
            (
                ConfigArgs {
                    trace_sample_ratio: Some(f64::NAN),
                    ..Default::default()
                },
                "trace_sample_ratio",
            ),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }
}
