//! Thin client for the parts of the Spacecast wire contract the scenarios use:
//! token minting, space creation/join, message sends and the stream URL.

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use jsonwebtoken::{EncodingKey, Header};
use reqwest::{StatusCode, Url, header::RETRY_AFTER};
use serde::{Deserialize, Serialize};

/// Total deadline of one REST request (connect to end of body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Minted tokens stay valid this long past the scenario's planned end.
const TOKEN_SLACK: Duration = Duration::from_secs(3600);

/// Options shared by every scenario.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Base URL of the server (plain http, loopback only). Several (repeated or
    /// comma-separated): the nodes of one cluster; setup (spaces, memberships) goes through the
    /// first, senders and subscribers spread over all of them unless `--send-url` /
    /// `--subscribe-url` say otherwise.
    #[arg(
        long = "url",
        value_name = "URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub urls: Vec<String>,
    /// The servers senders (`sends`) and the publisher (load scenarios) send to, round-robin
    /// (repeated or comma-separated). Default: every `--url`.
    #[arg(long = "send-url", value_name = "URL", value_delimiter = ',')]
    pub send_urls: Vec<String>,
    /// NATS monitoring origin (e.g. http://127.0.0.1:18222): the report names the node that
    /// owns each space (from `/connz`), at the start and at the end of the measured window.
    #[arg(long, value_name = "URL")]
    pub nats_monitor: Option<String>,
    /// HS256 secret the server verifies tokens with; used to mint tokens for
    /// the synthetic users `lt-user-<n>`.
    #[arg(long, env = "SPACECAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Size in bytes of each message's content.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(16..=65_536))]
    pub content_bytes: u32,
    /// Also print the results as one JSON object line.
    #[arg(long)]
    pub json: bool,
    /// Tokio worker threads for the loadtest itself (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    username: &'a str,
    exp: u64,
}

#[derive(Serialize)]
struct NewSpace<'a> {
    title: &'a str,
    description: &'a str,
    visibility: &'a str,
    hashtags: [&'a str; 0],
}

#[derive(Deserialize)]
struct CreatedSpace {
    space_id: String,
}

#[derive(Serialize)]
struct NewMessage<'a> {
    content: &'a str,
}

#[derive(Deserialize)]
struct CreatedMessage {
    message_id: String,
    seq: u64,
}

/// Result of one `POST /api/messages/{space_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// 201 with a well-formed Message.
    Acked { seq: u64 },
    /// 429 or 503: load shedding, not an error.
    Rejected {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Anything else; the string classifies the failure.
    Failed(String),
}

/// The synthetic user id / name for index `n`.
pub fn user_name(n: usize) -> String {
    format!("lt-user-{n}")
}

/// Parses and checks `--url`: plain http, loopback host, no path.
pub fn parse_base_url(url: &str) -> Result<Url> {
    let parsed = Url::parse(url).with_context(|| format!("invalid --url {url:?}"))?;
    if parsed.scheme() != "http" {
        bail!("--url must be plain http:// (got {url:?}); TLS is not supported");
    }
    let host = parsed
        .host_str()
        .with_context(|| format!("--url {url:?} has no host"))?;
    let ip_host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || ip_host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("--url must point at a loopback address (got host {host:?})");
    }
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        bail!("--url must be a bare origin like http://127.0.0.1:8080 (got {url:?})");
    }
    Ok(parsed)
}

/// Seconds from a `Retry-After` header (the delta-seconds form only).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Shared, cheaply clonable handle: one pooled HTTP client plus the signing key.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: Url,
    key: Arc<EncodingKey>,
    token_exp: u64,
}

impl Api {
    /// `max_connections` sizes the idle pool so that many concurrent requests
    /// keep their keep-alive connections (reqwest opens as many connections
    /// per host as there are concurrent requests; HTTP/1 only here).
    ///
    /// Requests go to the first `--url`; [`Api::at`] makes a handle for another server.
    pub fn new(common: &CommonArgs, max_connections: usize, run_for: Duration) -> Result<Self> {
        Self::with_timeout(common, max_connections, run_for, REQUEST_TIMEOUT)
    }

    /// [`Api::new`] with another total deadline per request.
    pub fn with_timeout(
        common: &CommonArgs,
        max_connections: usize,
        run_for: Duration,
        request_timeout: Duration,
    ) -> Result<Self> {
        let first = common
            .urls
            .first()
            .context("--url: at least one server URL is needed")?;
        let base = parse_base_url(first)?;
        if common.jwt_secret.is_empty() {
            bail!("--jwt-secret (or SPACECAST_JWT_SECRET) must not be empty");
        }
        crate::install_tls_provider();
        let client = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(max_connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(request_timeout)
            .build()
            .context("building the HTTP client")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("system clock before 1970")?;
        Ok(Self {
            client,
            base,
            key: Arc::new(EncodingKey::from_secret(common.jwt_secret.as_bytes())),
            token_exp: (now + run_for + TOKEN_SLACK).as_secs(),
        })
    }

    /// The same client and key, for the server at `base` (another node of the cluster).
    pub fn at(&self, base: &Url) -> Api {
        Api {
            client: self.client.clone(),
            base: base.clone(),
            key: Arc::clone(&self.key),
            token_exp: self.token_exp,
        }
    }

    /// The plain HTTP client (no proxy, the request timeout), for other endpoints.
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// HS256 token for synthetic user `n` (`sub` and `username` are `lt-user-<n>`).
    pub fn token(&self, n: usize) -> Result<String> {
        let name = user_name(n);
        let claims = Claims {
            sub: &name,
            username: &name,
            exp: self.token_exp,
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.key).context("signing a JWT")
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http URL has path segments")
            .clear()
            .extend(segments);
        url
    }

    /// `POST /api/spaces` → `space_id`.
    pub async fn create_space(&self, token: &str) -> Result<String> {
        let body = NewSpace {
            title: "loadtest space",
            description: "created by the loadtest",
            visibility: "public",
            hashtags: [],
        };
        let resp = self
            .client
            .post(self.endpoint(&["api", "spaces"]))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .context("POST /api/spaces")?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .context("reading POST /api/spaces body")?;
        if status != StatusCode::CREATED {
            bail!("POST /api/spaces returned {status}: {}", snippet(&bytes));
        }
        let created: CreatedSpace = serde_json::from_slice(&bytes)
            .with_context(|| format!("POST /api/spaces body: {}", snippet(&bytes)))?;
        Ok(created.space_id)
    }

    /// `POST /api/spaces/{id}/join`; 200 and 409 (already a member) are fine.
    pub async fn join_space(&self, token: &str, space_id: &str) -> Result<()> {
        let resp = self
            .client
            .post(self.endpoint(&["api", "spaces", space_id, "join"]))
            .bearer_auth(token)
            .send()
            .await
            .context("POST /api/spaces/{id}/join")?;
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        if status != StatusCode::OK && status != StatusCode::CONFLICT {
            bail!(
                "POST /api/spaces/{space_id}/join returned {status}: {}",
                snippet(&bytes)
            );
        }
        Ok(())
    }

    /// URL to post messages to `space_id`; computed once per space.
    pub fn messages_url(&self, space_id: &str) -> Url {
        self.endpoint(&["api", "messages", space_id])
    }

    /// `/v1/spaces/{id}/messages`.
    pub fn v1_messages_url(&self, space_id: &str) -> Url {
        self.endpoint(&["v1", "spaces", space_id, "messages"])
    }

    /// `/v1/spaces/{id}/messages/{mid}/reactions/{key}` (the key percent-encoded).
    pub fn reaction_url(&self, space_id: &str, message_id: &str, key: &str) -> Url {
        self.endpoint(&[
            "v1",
            "spaces",
            space_id,
            "messages",
            message_id,
            "reactions",
            key,
        ])
    }

    /// An absolute URL for a path (and query) on this server.
    pub fn url(&self, path_and_query: &str) -> Result<Url> {
        self.base
            .join(path_and_query)
            .with_context(|| format!("bad path {path_and_query:?}"))
    }

    /// `POST /v1/spaces/{id}/messages` with a JSON body: 201 (or 200 for a replayed key) is
    /// acknowledged.
    pub async fn send_v1(&self, token: &str, url: &Url, body: &serde_json::Value) -> SendOutcome {
        let result = self
            .client
            .post(url.clone())
            .bearer_auth(token)
            .json(body)
            .send()
            .await;
        self.outcome(result, |status| {
            status == StatusCode::CREATED || status == StatusCode::OK
        })
        .await
    }

    /// `PUT` (`set`) or `DELETE` a reaction: 200 is acknowledged.
    pub async fn react(&self, token: &str, url: &Url, set: bool) -> SendOutcome {
        let req = if set {
            self.client.put(url.clone())
        } else {
            self.client.delete(url.clone())
        };
        let result = req.bearer_auth(token).send().await;
        self.outcome(result, |status| status == StatusCode::OK)
            .await
    }

    /// The outcome of a write whose success is `ok(status)` (the body is drained, then read for
    /// a `seq` when there is one).
    async fn outcome(
        &self,
        result: reqwest::Result<reqwest::Response>,
        ok: impl Fn(StatusCode) -> bool,
    ) -> SendOutcome {
        let resp = match result {
            Ok(resp) => resp,
            Err(err) => return SendOutcome::Failed(classify(&err)),
        };
        let status = resp.status();
        let retry_after = parse_retry_after(
            resp.headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let bytes = match resp.bytes().await {
            Ok(bytes) => bytes,
            Err(err) => return SendOutcome::Failed(classify(&err)),
        };
        if ok(status) {
            let seq = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64))
                .unwrap_or(0);
            return SendOutcome::Acked { seq };
        }
        match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                SendOutcome::Rejected {
                    status: status.as_u16(),
                    retry_after,
                }
            }
            other => SendOutcome::Failed(format!("HTTP {}", other.as_u16())),
        }
    }

    /// `GET` a path: the status (0 for a transport failure) once the whole body has arrived.
    pub async fn get(&self, token: &str, url: &Url) -> Result<u16, String> {
        let resp = self
            .client
            .get(url.clone())
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = resp.status().as_u16();
        resp.bytes().await.map_err(|e| classify(&e))?;
        Ok(status)
    }

    /// `POST /api/messages/{id}`; the outcome is known once the whole
    /// response (status and body) has arrived.
    pub async fn send_message(&self, token: &str, url: &Url, content: &str) -> SendOutcome {
        let result = self
            .client
            .post(url.clone())
            .bearer_auth(token)
            .json(&NewMessage { content })
            .send()
            .await;
        let resp = match result {
            Ok(resp) => resp,
            Err(err) => return SendOutcome::Failed(classify(&err)),
        };
        let status = resp.status();
        let retry_after = parse_retry_after(
            resp.headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        // Always drain the body so the connection goes back to the pool.
        let bytes = match resp.bytes().await {
            Ok(bytes) => bytes,
            Err(err) => return SendOutcome::Failed(classify(&err)),
        };
        match status {
            StatusCode::CREATED => match serde_json::from_slice::<CreatedMessage>(&bytes) {
                Ok(msg) if !msg.message_id.is_empty() => SendOutcome::Acked { seq: msg.seq },
                _ => SendOutcome::Failed("201 without message_id/seq".to_owned()),
            },
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                SendOutcome::Rejected {
                    status: status.as_u16(),
                    retry_after,
                }
            }
            other => SendOutcome::Failed(format!("HTTP {}", other.as_u16())),
        }
    }

    /// `ws://…/v1/stream?token=<JWT>`.
    /// `ws://…/socket.io/?EIO=4&transport=websocket` (Socket.IO authenticates in its handshake).
    pub fn socketio_url(&self) -> String {
        let mut url = self.endpoint(&["socket.io", ""]);
        url.set_scheme("ws")
            .expect("http → ws is a valid scheme change");
        url.query_pairs_mut()
            .append_pair("EIO", "4")
            .append_pair("transport", "websocket");
        url.into()
    }

    pub fn stream_url(&self, token: &str) -> String {
        let mut url = self.endpoint(&["v1", "stream"]);
        url.set_scheme("ws")
            .expect("http → ws is a valid scheme change");
        url.query_pairs_mut().append_pair("token", token);
        url.into()
    }
}

fn classify(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timeout".to_owned()
    } else if err.is_connect() {
        "connect".to_owned()
    } else if err.is_body() || err.is_decode() {
        "body".to_owned()
    } else {
        "transport".to_owned()
    }
}

/// First 300 bytes of a response body, for error messages.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut cut = text.len().min(300);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(url: &str) -> CommonArgs {
        CommonArgs {
            urls: vec![url.to_owned()],
            send_urls: Vec::new(),
            nats_monitor: None,
            jwt_secret: "secret".to_owned(),
            content_bytes: 100,
            json: false,
            threads: None,
        }
    }

    #[test]
    fn accepts_loopback_origins_only() {
        assert!(parse_base_url("http://127.0.0.1:8080").is_ok());
        assert!(parse_base_url("http://127.0.0.1:8080/").is_ok());
        assert!(parse_base_url("http://localhost:1234").is_ok());
        assert!(parse_base_url("http://[::1]:8080").is_ok());
        assert!(parse_base_url("http://10.0.0.1:8080").is_err());
        assert!(parse_base_url("http://example.com").is_err());
        assert!(parse_base_url("https://127.0.0.1:8080").is_err());
        assert!(parse_base_url("http://127.0.0.1:8080/prefix").is_err());
        assert!(parse_base_url("not a url").is_err());
    }

    #[test]
    fn builds_endpoints() {
        let api = Api::new(&common("http://127.0.0.1:9000"), 4, Duration::from_secs(1)).unwrap();
        assert_eq!(
            api.messages_url("abc-123").as_str(),
            "http://127.0.0.1:9000/api/messages/abc-123"
        );
        assert_eq!(
            api.endpoint(&["api", "spaces", "s 1", "join"]).as_str(),
            "http://127.0.0.1:9000/api/spaces/s%201/join"
        );
        assert_eq!(
            api.stream_url("a.b-c_d"),
            "ws://127.0.0.1:9000/v1/stream?token=a.b-c_d"
        );
        let other = api.at(&Url::parse("http://127.0.0.1:9001").unwrap());
        assert_eq!(
            other.messages_url("x").as_str(),
            "http://127.0.0.1:9001/api/messages/x"
        );
        assert_eq!(other.token(3).unwrap(), api.token(3).unwrap());
    }

    #[test]
    fn tokens_carry_the_contract_claims() {
        use jsonwebtoken::{DecodingKey, Validation, decode};

        #[derive(Deserialize)]
        struct Decoded {
            sub: String,
            username: String,
            exp: u64,
        }

        let api = Api::new(&common("http://127.0.0.1:9000"), 4, Duration::from_secs(60)).unwrap();
        let token = api.token(7).unwrap();
        let data = decode::<Decoded>(
            &token,
            &DecodingKey::from_secret(b"secret"),
            &Validation::default(),
        )
        .unwrap();
        assert_eq!(data.header.alg, jsonwebtoken::Algorithm::HS256);
        assert_eq!(data.claims.sub, "lt-user-7");
        assert_eq!(data.claims.username, "lt-user-7");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(data.claims.exp > now + 3600);
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(Some(" 0 ")), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn empty_secret_is_refused() {
        let mut args = common("http://127.0.0.1:9000");
        args.jwt_secret.clear();
        assert!(Api::new(&args, 1, Duration::from_secs(1)).is_err());
    }
}
