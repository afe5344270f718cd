//! The `spacecast` binary's library: the warp edge, authentication, configuration and CLI.
//!
//! The path of one request, by file:
//! 1. `main.rs` → [`cli`]: parse the command line, build the [`config::Config`];
//! 2. [`server`]: open the store, start the engine, serve, shut down in order;
//!    [`listener`]: the accept loop and its limits (connection cap, header and idle timeouts);
//! 3. [`routes`]: one file per REST resource (`routes/spaces.rs`, `routes/messages.rs`, …);
//!    [`edge`]: realtime upgrades below warp; [`stream`]: the `/v1/stream` WebSocket adapter
//!    of the protocol-neutral session core [`realtime`] (one file per command);
//! 4. [`auth`]: bearer JWT verification; [`error`]: the one place errors become HTTP;
//!    [`input`]: client ids and message text, shared by routes and sessions;
//! 5. then `spacecast_engine::SpaceHandle` → space actor → store → hub for writes, and
//!    `spacecast_engine::SpaceReader` → store for reads, which applies the access rules: the edge
//!    never holds the store (see the engine's map).
//!
//! [`app::App`] holds the shared handles, passed explicitly to every route.

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
pub mod realtime;
pub mod routes;
pub mod server;
pub mod stream;
