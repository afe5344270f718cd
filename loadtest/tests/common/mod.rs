//! Helpers shared by the loadtest crate's black-box tests (`harness.rs`, `cluster.rs`).

use std::{
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The `loadtest` binary Cargo built for this test.
pub fn loadtest_bin() -> &'static str {
    env!("CARGO_BIN_EXE_loadtest")
}

/// The server binary: `SPACECAST_BIN`, else `spacecast` beside the `loadtest` binary (it belongs
/// to another package, so Cargo gives these tests no `CARGO_BIN_EXE_spacecast`).
pub fn spacecast_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SPACECAST_BIN") {
        return bin.into();
    }
    let bin = Path::new(loadtest_bin()).with_file_name("spacecast");
    assert!(
        bin.exists(),
        "{} not found: build the server first (cargo build -p spacecast-api) or set SPACECAST_BIN",
        bin.display()
    );
    bin
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `deadline`.
pub fn eventually<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The count `key` of a JSON report; panics naming it when it is not one.
pub fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {v}"))
}
