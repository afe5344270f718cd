//! The promtool the alert, dashboard and metrics tests run (observability/tests/promtool.rs and,
//! through `#[path]`, api/tests/metrics_export.rs): `SPACECAST_TEST_PROMTOOL`, which
//! scripts/test.sh exports from `scripts/promtool.sh env`. Unset or missing fails the test with
//! the way to install it.

use std::path::PathBuf;

pub fn promtool() -> PathBuf {
    let p = std::env::var_os("SPACECAST_TEST_PROMTOOL").unwrap_or_else(|| {
        panic!(
            "SPACECAST_TEST_PROMTOOL is not set: run `scripts/promtool.sh install` and \
             `eval \"$(scripts/promtool.sh env)\"` (scripts/test.sh does)"
        )
    });
    let p = PathBuf::from(p);
    assert!(
        p.is_file(),
        "SPACECAST_TEST_PROMTOOL={} is missing",
        p.display()
    );
    p
}
