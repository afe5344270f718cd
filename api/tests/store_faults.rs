//! Faults injected under the real binary's embedded store (issue 6, item 1): the store must never
//! enter a state it cannot leave while the process lives, and `/readyz` must tell the truth.
//!
//! The fault is real: the data dir is a small tmpfs that the test fills until writes fail with
//! `ENOSPC` (fjall then poisons itself and refuses every later write), then frees. Mounting needs
//! root, which the test suite runs as (CI too); without it the test fails, naming the reason.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Server, eventually, token};
use serde_json::Value;

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("data");
        std::fs::create_dir_all(&dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (the test suite runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir,
            _parent: parent,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system of `dir` with a file until a write fails; returns the file.
fn fill_disk(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0xA5u8; 64 * 1024];
    for _ in 0..1_000_000 {
        if f.write_all(&chunk).is_err() || f.flush().is_err() {
            return path;
        }
    }
    panic!("the tmpfs never filled up");
}

async fn readyz(s: &Server) -> (u16, Value) {
    let r = s.http.get(s.url("/readyz")).send().await.expect("readyz");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A full disk fails sends with 503 and `/readyz` with 503; once space is freed the store
/// reopens by itself: sends succeed again, nothing acknowledged is lost or duplicated, seqs keep
/// increasing, and all of it survives a restart.
#[tokio::test]
async fn a_full_disk_is_refused_clearly_and_the_store_recovers_once_space_returns() {
    let fs = Tmpfs::mount("48m");
    let mut s = Server::start_on(&fs.dir, &["--store", "embedded"]).await;
    let tok = token("u1");
    let space = s.create_space(&tok, "full disk").await["space_id"]
        .as_str()
        .expect("space_id")
        .to_owned();
    let mut acked: Vec<String> = Vec::new();
    for i in 0..20 {
        let (st, m) = s.send_text(&tok, &space, &format!("before {i}")).await;
        assert_eq!(st, 201, "{m}");
        acked.push(m["message_id"].as_str().unwrap().to_owned());
    }

    let filler = fill_disk(&fs.dir);
    // Writes now fail: a send gets 503 store_unavailable with Retry-After (poll: the first write
    // after the fill may still fit in a partly filled page).
    let mut i = 0;
    let refused = eventually(
        "a send refused on the full disk",
        Duration::from_secs(30),
        || {
            i += 1;
            let content = format!("during {i} {}", "x".repeat(2000));
            let (http, base, tok, space) =
                (s.http.clone(), s.base.clone(), tok.clone(), space.clone());
            async move {
                let r = http
                    .post(format!("{base}/api/messages/{space}"))
                    .bearer_auth(&tok)
                    .json(&serde_json::json!({"content": content}))
                    .send()
                    .await
                    .ok()?;
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").is_some();
                let body: Value = r.json().await.ok()?;
                if status == 201 {
                    return None;
                }
                Some((status, retry, body))
            }
        },
    )
    .await;
    assert_eq!(refused.0, 503, "{:?}", refused.2);
    assert!(refused.1, "Retry-After on the refusal");
    assert_eq!(refused.2["code"], "store_unavailable");
    // Any sends acknowledged while filling count as acknowledged.
    let (st, body) = readyz(&s).await;
    assert_eq!(
        st, 503,
        "/readyz must report a store that cannot write: {body}"
    );
    // The failed commits are counted as `unavailable` store errors (a full disk is neither a
    // timeout nor overload).
    let metrics = s.metrics_text().await;
    let series = "spacecast_store_errors_total{kind=\"unavailable\",op=\"commit\"} ";
    let failed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not exported"));
    assert!(failed >= 1.0, "{series}{failed}");

    std::fs::remove_file(&filler).expect("free the disk");
    eventually("/readyz ready again", Duration::from_secs(30), || async {
        (readyz(&s).await.0 == 200).then_some(())
    })
    .await;
    for i in 0..20 {
        let (st, m) = s.send_text(&tok, &space, &format!("after {i}")).await;
        assert_eq!(st, 201, "sends work again: {m}");
        acked.push(m["message_id"].as_str().unwrap().to_owned());
    }
    let check = |listed: Vec<Value>| {
        let ids: Vec<String> = listed
            .iter()
            .map(|m| m["message_id"].as_str().unwrap().to_owned())
            .collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "no duplicate messages");
        for id in &acked {
            assert!(unique.contains(id), "acknowledged message {id} is listed");
        }
        let seqs: Vec<u64> = listed.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] > w[1]),
            "newest first, seqs strictly decreasing: {seqs:?}"
        );
    };
    check(s.list_all(&tok, &space).await);

    // And it is all durable: kill -9 and start again on the same data.
    s.kill9().await;
    let s = Server::start_on(&fs.dir, &["--store", "embedded"]).await;
    check(s.list_all(&tok, &space).await);
}
