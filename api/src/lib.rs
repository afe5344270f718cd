//! The `spacecast` binary's library: the warp edge, authentication, configuration and CLI.
//!
//! The path of one request, by file:
//! 1. `main.rs` → [`cli`]: parse the command line, build the [`config::Config`];
//! 2. [`server`]: open the store, start the engine, serve, shut down in order;
//!    [`listener`]: the accept loop and its limits (connection cap, header and idle timeouts);
//! 3. [`routes`]: one file per REST resource (`routes/spaces.rs`, `routes/messages.rs`, …);
//!    [`edge`]: realtime upgrades below warp; [`stream`]: the `/v1/stream` WebSocket adapter
//!    and [`socketio`]: the Socket.IO adapter (`/socket.io/`, the Space7 app's realtime) of the
//!    protocol-neutral session core [`realtime`] (one file per command);
//! 4. [`auth`]: bearer JWT verification; [`error`]: the one place errors become HTTP;
//!    [`media`]: uploads behind the `MediaStore` trait (local directory or S3 bucket);
//!    [`input`]: client ids and message text, shared by routes and sessions;
//!    [`ratelimit`]: the per-user send rate limit every send surface checks;
//! 5. then `spacecast_engine::SpaceHandle` → space actor → store → hub for writes, and
//!    `spacecast_engine::SpaceReader` → store for reads, which applies the access rules: the edge
//!    never holds the store (see the engine's map).
//!
//! [`app::App`] holds the shared handles, passed explicitly to every route.

/// Installs `ring` as the process's one rustls crypto provider, unless one is installed already.
/// Call it first thing in `main`, and in any process (a test) that builds an HTTP client:
/// `reqwest` is built with rustls and no bundled provider (DEPENDENCIES.md "One TLS crypto
/// provider"), so a client built before this panics.
///
/// rustls 0.23.48 deprecates its `ring` provider because ring has no post-quantum key exchange;
/// it is still the project's one provider (the alternative, aws-lc-rs, is a C build, and with
/// two providers rustls picks none). TLS to the object store then negotiates classical ECDHE
/// (X25519), which every S3 endpoint offers.
#[allow(deprecated)]
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connections;
pub mod edge;
pub mod error;
pub mod input;
pub mod listener;
pub mod media;
pub mod openapi;
pub mod ratelimit;
pub mod realtime;
pub mod routes;
pub mod server;
pub mod socketio;
pub mod stream;
