//! Several servers at once: the nodes of one Spacecast cluster.
//!
//! `--url` takes one base URL or several (repeated or comma-separated); setup (space creation,
//! memberships) always goes through the first. `--send-url` chooses the nodes senders and
//! publishers use and `--subscribe-url` the nodes subscribers connect to; each defaults to every
//! `--url`. With a single `--url` everything goes to it, as before.
//!
//! Spreading is round-robin and deterministic ([`spread`]): sender / message / subscriber `i` of
//! a group of `group` consecutive indexes (one per space) goes to node `(i / group) mod n`, so
//! that every space's senders or subscribers are spread over the nodes even when the number of
//! spaces and the number of nodes share a factor.
//!
//! [`owners`] asks a NATS server's monitoring endpoint which node owns each space: the owner of
//! a space is the one node subscribed to `spacecast.cmd.<space>`, and Spacecast names its NATS
//! connection `spacecast-<node id>` (docs/cluster.md).

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, Result, bail};
use reqwest::Url;
use serde::Deserialize;

use crate::api::parse_base_url;

/// Where each kind of request goes; every list has at least one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// Setup requests (spaces, memberships): the first `--url`.
    pub setup: Url,
    /// Senders and publishers, round-robin.
    pub send: Vec<Url>,
    /// Subscribers, round-robin.
    pub subscribe: Vec<Url>,
}

impl Nodes {
    /// Parses `--url`, `--send-url` and `--subscribe-url` (each a list; the last two default to
    /// the first). Every URL must pass [`parse_base_url`].
    pub fn parse(urls: &[String], send: &[String], subscribe: &[String]) -> Result<Nodes> {
        let all = parse_list("--url", urls)?;
        let Some(setup) = all.first().cloned() else {
            bail!("--url: at least one server URL is needed");
        };
        let send = if send.is_empty() {
            all.clone()
        } else {
            parse_list("--send-url", send)?
        };
        let subscribe = if subscribe.is_empty() {
            all
        } else {
            parse_list("--subscribe-url", subscribe)?
        };
        Ok(Nodes {
            setup,
            send,
            subscribe,
        })
    }

    /// Whether more than one server is involved.
    pub fn several(&self) -> bool {
        let mut all: Vec<&Url> = self.send.iter().chain(&self.subscribe).collect();
        all.push(&self.setup);
        all.sort();
        all.dedup();
        all.len() > 1
    }
}

fn parse_list(flag: &str, urls: &[String]) -> Result<Vec<Url>> {
    urls.iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .map(|u| parse_base_url(u).with_context(|| format!("{flag} {u:?}")))
        .collect()
}

/// The node (of `nodes`) for index `i` of groups of `group` consecutive indexes:
/// `(i / group) mod nodes`. With `group` = the number of spaces and `i mod group` = the space,
/// each space's members of the sequence take the nodes in turn.
pub fn spread(i: usize, group: usize, nodes: usize) -> usize {
    (i / group.max(1)) % nodes.max(1)
}

/// Prefix of a Spacecast node's NATS connection name.
const CONNECTION_PREFIX: &str = "spacecast-";
/// Prefix of the subject a space's owner subscribes to.
const COMMAND_SUBJECT_PREFIX: &str = "spacecast.cmd.";

#[derive(Deserialize)]
struct Connz {
    #[serde(default)]
    connections: Vec<Connection>,
    #[serde(default)]
    total: u64,
    #[serde(default)]
    limit: u64,
}

#[derive(Deserialize)]
struct Connection {
    #[serde(default)]
    name: String,
    #[serde(default)]
    subscriptions_list: Vec<String>,
}

/// The owner node id of every space that has one, from the JSON of NATS's `/connz?subs=1`.
/// A space whose command subject two connections hold (an old and a new owner overlapping for
/// a moment) maps to the lexically smallest node id; such a state does not last.
pub fn parse_owners(connz: &str) -> Result<BTreeMap<String, String>> {
    let connz: Connz = serde_json::from_str(connz).context("NATS /connz is not JSON")?;
    if connz.limit > 0 && connz.total > connz.limit {
        bail!(
            "NATS /connz listed {} of {} connections; raise its limit",
            connz.limit,
            connz.total
        );
    }
    let mut owners = BTreeMap::<String, String>::new();
    for conn in connz.connections {
        let Some(node) = conn.name.strip_prefix(CONNECTION_PREFIX) else {
            continue;
        };
        for subject in &conn.subscriptions_list {
            if let Some(space) = subject.strip_prefix(COMMAND_SUBJECT_PREFIX) {
                let entry = owners
                    .entry(space.to_owned())
                    .or_insert_with(|| node.into());
                if node < entry.as_str() {
                    *entry = node.to_owned();
                }
            }
        }
    }
    Ok(owners)
}

/// Asks NATS monitoring at `monitor` (e.g. `http://127.0.0.1:18222`) for the owner of each of
/// `spaces`; `None` for a space nobody owns now.
pub async fn owners(
    http: &reqwest::Client,
    monitor: &Url,
    spaces: &[String],
) -> Result<BTreeMap<String, Option<String>>> {
    let mut url = monitor.clone();
    url.set_path("/connz");
    url.set_query(Some("subs=1&limit=100000"));
    let body = http
        .get(url.clone())
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()
        .with_context(|| format!("GET {url}"))?
        .text()
        .await
        .with_context(|| format!("reading GET {url}"))?;
    let all = parse_owners(&body)?;
    Ok(spaces
        .iter()
        .map(|s| (s.clone(), all.get(s).cloned()))
        .collect())
}

/// Parses `--nats-monitor` (an http origin; the monitoring port need not be loopback-checked
/// like the server, but it must be plain http).
pub fn parse_monitor(url: &str) -> Result<Url> {
    let parsed = Url::parse(url).with_context(|| format!("invalid --nats-monitor {url:?}"))?;
    if parsed.scheme() != "http" || parsed.host_str().is_none() {
        bail!("--nats-monitor must be an http:// origin like http://127.0.0.1:18222");
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn one_url_serves_everything() {
        let n = Nodes::parse(&s(&["http://127.0.0.1:1"]), &[], &[]).unwrap();
        assert_eq!(n.setup.as_str(), "http://127.0.0.1:1/");
        assert_eq!(n.send, vec![n.setup.clone()]);
        assert_eq!(n.subscribe, vec![n.setup.clone()]);
        assert!(!n.several());
    }

    #[test]
    fn send_and_subscribe_lists_default_to_every_url() {
        let urls = s(&[
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "http://127.0.0.1:3",
        ]);
        let n = Nodes::parse(&urls, &[], &s(&["http://127.0.0.1:2"])).unwrap();
        assert_eq!(n.setup.port(), Some(1));
        assert_eq!(
            n.send.iter().map(|u| u.port().unwrap()).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(n.subscribe.len(), 1);
        assert_eq!(n.subscribe[0].port(), Some(2));
        assert!(n.several());
        // Blank entries (a trailing comma) are ignored; a bad one names its flag.
        let n = Nodes::parse(&s(&["http://127.0.0.1:1", " "]), &[], &[]).unwrap();
        assert_eq!(n.send.len(), 1);
        let err = Nodes::parse(&urls, &s(&["http://10.1.1.1:2"]), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("--send-url"), "{err:#}");
        assert!(Nodes::parse(&s(&[""]), &[], &[]).is_err());
    }

    #[test]
    fn spreading_gives_every_space_every_node() {
        // 3 spaces, 3 nodes, 9 subscribers: subscriber k is in space k % 3 and on node
        // spread(k, 3, 3); each (space, node) pair gets exactly one.
        let mut pairs = std::collections::BTreeSet::new();
        for k in 0..9 {
            assert!(pairs.insert((k % 3, spread(k, 3, 3))));
        }
        assert_eq!(pairs.len(), 9);
        // One space: plain round-robin.
        assert_eq!(
            (0..6).map(|k| spread(k, 1, 3)).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 2]
        );
        // One node, or degenerate sizes: always node 0.
        assert!((0..10).all(|k| spread(k, 4, 1) == 0));
        assert_eq!(spread(5, 0, 0), 0);
    }

    #[test]
    fn owners_from_connz() {
        let connz = r#"{
          "num_connections": 4, "total": 4, "offset": 0, "limit": 1024,
          "connections": [
            {"cid": 1, "name": "spacecast-n0",
             "subscriptions_list": ["spacecast.cmd.a", "spacecast.reply.n0.>", "spacecast.ev.b"]},
            {"cid": 2, "name": "spacecast-n1", "subscriptions_list": ["spacecast.cmd.b"]},
            {"cid": 3, "name": "someone-else", "subscriptions_list": ["spacecast.cmd.c"]},
            {"cid": 4, "name": "spacecast-n2"},
            {"cid": 5, "name": "spacecast-n3", "subscriptions_list": ["spacecast.cmd.b"]}
          ]
        }"#;
        let owners = parse_owners(connz).unwrap();
        assert_eq!(owners.get("a").map(String::as_str), Some("n0"));
        // Two holders for a moment: the smallest id, deterministically.
        assert_eq!(owners.get("b").map(String::as_str), Some("n1"));
        assert_eq!(owners.get("c"), None, "not a Spacecast connection");
        assert_eq!(owners.len(), 2);
        assert!(parse_owners(r#"{"connections": []}"#).unwrap().is_empty());
        assert!(parse_owners("<html>").is_err());
        let truncated = r#"{"total": 2000, "limit": 1024, "connections": []}"#;
        assert!(parse_owners(truncated).is_err());
    }

    #[test]
    fn monitor_url_must_be_http() {
        assert!(parse_monitor("http://127.0.0.1:18222").is_ok());
        assert!(parse_monitor("nats://127.0.0.1:14222").is_err());
        assert!(parse_monitor("nonsense").is_err());
    }
}
