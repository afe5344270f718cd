//! Starting and stopping a node: opens the store, starts the engine, binds the listener, serves
//! until SIGTERM/SIGINT, then shuts down in order:
//!
//! 1. stop accepting connections and report not-ready;
//! 2. tell realtime sessions to close with 1001 (going away); close every Socket.IO connection
//!    (its clients reconnect, to another node);
//! 3. let in-flight HTTP requests finish (sends are answered once durable);
//! 4. drain every space actor (each settles what it accepted) and make the store durable;
//! 5. exit 0.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use spacecast_engine::bus::LocalBus;
use spacecast_engine::bus::lease::LeaseTiming;
use spacecast_engine::bus::nats::{NatsBus, NatsConfig};
use spacecast_engine::store::Store;
use spacecast_engine::store::cql::{CqlConfig, CqlStore};
use spacecast_engine::store::embedded::EmbeddedStore;
use spacecast_engine::{Engine, EngineConfig};
use spacecast_observability::Metrics;
use tokio::sync::watch;
use warp::Filter;

use crate::app::App;
use crate::auth::{Authenticator, load_or_create_secret};
use crate::config::{Config, StoreKind};
use crate::edge::Edge;
use crate::listener::{self, Limits, fit_descriptors};
use crate::routes::{recover, routes};

/// Runs `spacecast serve` until a termination signal, then shuts down gracefully.
///
/// # Errors
/// Start-up failures: the data dir, store, key file or listen address is unusable.
pub async fn serve(config: Config, metrics: Metrics) -> anyhow::Result<()> {
    metrics.set_build_info(env!("CARGO_PKG_VERSION"), &config.node_id);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    // With a public key and no explicit secret, the node is in production mode: only tokens
    // signed by the key's owner are accepted, and no development secret is created.
    let secret = match (&config.jwt_secret, &config.jwt_public_key) {
        (None, Some(_)) => None,
        (configured, _) => Some(load_or_create_secret(
            configured.as_deref(),
            &config.data_dir,
        )?),
    };
    let public_pem = match &config.jwt_public_key {
        Some(p) => Some(
            std::fs::read(p)
                .with_context(|| format!("cannot read jwt_public_key {}", p.display()))?,
        ),
        None => None,
    };
    let auth = Authenticator::new(secret.as_deref(), public_pem.as_deref())?;
    let store = open_store(&config, &metrics).await?;
    let engine_config = EngineConfig {
        max_inflight_per_space: config.max_inflight_per_space,
        idle_timeout: config.space_idle_timeout,
        subscriber_queue: config.subscriber_queue,
        message_cache_bytes: config.message_cache_bytes,
        edit_window: config.edit_window,
        presence: config.presence,
        ..EngineConfig::default()
    };
    let engine = match &config.nats_url {
        None => {
            let bus = Arc::new(LocalBus::new(config.node_id.clone()));
            Engine::start_with_bus(engine_config, store, bus, None, metrics.clone()).await?
        }
        Some(url) => {
            let nats = NatsConfig {
                url: url.clone(),
                node_id: config.node_id.clone(),
                lease: LeaseTiming::with_ttl(config.lease_ttl),
            };
            let (bus, lost) = NatsBus::connect(nats, metrics.clone()).await?;
            let engine = Engine::start_with_bus(
                engine_config,
                store,
                bus.clone(),
                Some(lost),
                metrics.clone(),
            )
            .await?;
            bus.on_reconnect(engine.fanout().clone());
            tracing::info!(nats = %url, node_id = %config.node_id, "joined the cluster");
            engine
        }
    };
    if config.search {
        engine
            .start_search(spacecast_engine::search::SearchConfig::new(
                config.data_dir.join("search"),
            ))
            .await?;
    }
    let media = crate::media::open(&config).await?;
    tracing::info!(media = %media.describe(), "media store");
    let mut config = config;
    let limits = connection_limits(&mut config, &metrics);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    config.listen = addr;
    let shutdown_timeout = config.shutdown_timeout;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut stopped = stop_rx.clone();
    let realtime = realtime_runtime(config.realtime_threads)?;
    let app = App::new(
        engine.clone(),
        auth,
        config,
        media,
        metrics,
        stop_rx,
        realtime.handle(),
    );

    let routes = routes(app.clone()).recover(recover).unify();
    let socketio = crate::socketio::build(&app);
    // Socket.IO connections are closed as soon as shutdown starts, beside the HTTP drain.
    let socketio_closed = {
        let stop = app.stop.clone();
        let socketio = socketio.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            socketio.close(shutdown_timeout).await;
        })
    };
    let stopping = {
        let app = app.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested: refusing new connections, draining in-flight work");
            app.accepting.store(false, Ordering::Release);
            app.stop.cancel();
            let _ = stop_tx.send(true);
        }
    };
    tracing::info!(%addr, node_id = %app.config.node_id, data_dir = %app.config.data_dir.display(), "spacecast serving");
    println!("spacecast listening on http://{addr}");
    let _ = std::io::stdout().flush();

    let rest = hyper_util::service::TowerToHyperService::new(warp::service(routes));
    let service = Edge::new(app.clone(), rest, socketio);
    let server = listener::serve(listener, service, limits, app.metrics.clone(), stopping);
    // Serve until the signal; then give in-flight requests `shutdown_timeout` to finish.
    let drain_deadline = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    tokio::select! {
        biased;
        () = server => {}
        () = drain_deadline => tracing::warn!("in-flight HTTP requests did not finish in time"),
    }
    app.sessions.close();
    if tokio::time::timeout(shutdown_timeout, app.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!("some realtime sessions did not close in time");
    }
    // Bounded by its own timeout.
    let _ = socketio_closed.await;
    // Sessions are gone (or abandoned after the timeout); nothing there holds durable work.
    drop(realtime);
    engine.shutdown(shutdown_timeout).await;
    tracing::info!("spacecast stopped");
    Ok(())
}

/// The nice value of the realtime runtime's threads: a little below the request threads, so a
/// request that wakes up while fan-out keeps a core busy runs first (CFS weights 1024 vs 335).
const REALTIME_NICE: i32 = 5;

/// The runtime realtime sessions run on, apart from the request runtime, when `threads > 0`:
/// delivering to thousands of subscribers is then scheduled by the OS beside request handling,
/// at a slightly lower priority ([`REALTIME_NICE`]), instead of queueing in front of it.
///
/// # Errors
/// The threads cannot be started.
fn realtime_runtime(threads: usize) -> anyhow::Result<RealtimeRuntime> {
    if threads == 0 {
        return Ok(RealtimeRuntime(None));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("spacecast-rt")
        .on_thread_start(|| {
            // Best effort: without the right to renice, the threads keep the default priority.
            let _ =
                rustix::process::setpriority_process(Some(rustix::thread::gettid()), REALTIME_NICE);
        })
        .enable_all()
        .build()
        .context("cannot start the realtime runtime")?;
    Ok(RealtimeRuntime(Some(rt)))
}

/// The realtime runtime, stopped without waiting when dropped (dropping a tokio runtime inside
/// another one's task would panic; on any early return of `serve` too).
struct RealtimeRuntime(Option<tokio::runtime::Runtime>);

impl RealtimeRuntime {
    fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.0.as_ref().map(|rt| rt.handle().clone())
    }
}

impl Drop for RealtimeRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The HTTP limits, with `max_http_connections` and `max_connections` lowered (in `config` too)
/// when together with the descriptor reserve they exceed the process's descriptor limit: past
/// it, accepts fail and the store cannot open files. Logs the effective caps and sets their gauge.
fn connection_limits(config: &mut Config, metrics: &Metrics) -> Limits {
    let nofile = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _hard)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit; assuming 1024");
            1024
        }
    };
    let fit = fit_descriptors(nofile, config.max_http_connections, config.max_connections);
    if fit.lowered {
        tracing::warn!(
            descriptor_limit = nofile,
            reserve = listener::DESCRIPTOR_RESERVE,
            max_http_connections = config.max_http_connections,
            max_connections = config.max_connections,
            effective_max_http_connections = fit.http,
            effective_max_connections = fit.realtime,
            "max_http_connections + max_connections + reserve exceed the descriptor limit; \
             lowering the caps to fit (raise the hard limit, e.g. LimitNOFILE, to keep them)"
        );
    }
    config.max_http_connections = fit.http;
    config.max_connections = fit.realtime;
    metrics
        .connection_limit
        .with_label_values(&["http"])
        .set(i64::try_from(fit.http).unwrap_or(i64::MAX));
    metrics
        .connection_limit
        .with_label_values(&["realtime"])
        .set(i64::try_from(fit.realtime).unwrap_or(i64::MAX));
    tracing::info!(
        descriptor_limit = nofile,
        max_http_connections = fit.http,
        max_connections = fit.realtime,
        http_header_timeout = ?config.http_header_timeout,
        http_idle_timeout = ?config.http_idle_timeout,
        "connection limits"
    );
    Limits {
        max_connections: fit.http,
        max_refusals: fit.refusals,
        header_timeout: config.http_header_timeout,
        idle_timeout: config.http_idle_timeout,
    }
}

/// Opens the configured store backend.
///
/// # Errors
/// The embedded store's directory is unusable or locked; the CQL cluster is unreachable or its
/// schema is older than this build (run `spacecast migrate`).
async fn open_store(config: &Config, metrics: &Metrics) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config.store {
        StoreKind::Embedded => EmbeddedStore::open(&config.data_dir.join("store"), metrics.clone())
            .with_context(|| {
                format!(
                    "cannot open the embedded store in {} (is another spacecast using it?)",
                    config.data_dir.display()
                )
            })?,
        StoreKind::Cql => CqlStore::connect(&cql_config(config))
            .await
            .with_context(|| {
                format!(
                    "cannot use the CQL store (keyspace {:?})",
                    config.cql_keyspace
                )
            })?,
    })
}

/// The CQL settings of `config`.
pub fn cql_config(config: &Config) -> CqlConfig {
    CqlConfig {
        nodes: config.cql_nodes.clone(),
        keyspace: config.cql_keyspace.clone(),
        replication: config.cql_replication.clone(),
        ..CqlConfig::default()
    }
}

/// Runs `spacecast migrate`: creates or updates the CQL schema. Idempotent.
///
/// # Errors
/// The cluster is unreachable or refuses a statement.
pub async fn migrate(config: Config) -> anyhow::Result<i32> {
    anyhow::ensure!(
        config.store == StoreKind::Cql,
        "the embedded store needs no migration; pass --store cql to migrate a CQL keyspace"
    );
    Ok(spacecast_engine::store::cql::migrate(&cql_config(&config)).await?)
}

/// Resolves on SIGTERM or SIGINT.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
