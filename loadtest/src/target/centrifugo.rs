//! Centrifugo v6: publishes through the HTTP server API (`POST /api/publish`, `X-API-Key`),
//! subscribers speak the JSON client protocol (v2) over `/connection/websocket`:
//! `{"id":1,"connect":{"token":<HS256 JWT, sub = user>}}` → `{"id":1,"connect":{…}}`, then
//! `{"id":2,"subscribe":{"channel":…}}` → `{"id":2,"subscribe":{…}}`; publications arrive as
//! `{"push":{"channel":…,"pub":{"data":…,"offset":N}}}`. One WebSocket frame may carry several
//! replies separated by `\n`. The server pings with `{}` every 25 s and the client must answer
//! `{}`. Channels are `bench:<run>-<i>`: `scripts/centrifugo.sh config` gives that namespace a
//! history with forced positioning, so `offset` numbers each channel's publications 1, 2, 3…
//! (the sequence gaps are checked against).
//!
//! Centrifugo's memory engine acknowledges a publish once it is in process memory; nothing is
//! durable. Spacecast acknowledges only after an fsync'd group commit.

use std::{collections::VecDeque, net::IpAddr, time::Duration};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, de::IgnoredAny};
use tokio_tungstenite::tungstenite::Message;

use super::{
    CLOSE_TIMEOUT, ConnectError, HANDSHAKE_STEP_TIMEOUT, Incoming, PublishOutcome, Subscription,
    Target, Ws, close_code, connect_ws,
};
use crate::{api::Api, stats};

/// The namespace `scripts/centrifugo.sh config` configures.
pub const NAMESPACE: &str = "bench";

pub struct Centrifugo {
    api: Api,
    http: reqwest::Client,
    publish_url: Url,
    ws_url: String,
    api_key: String,
    run_id: String,
}

impl Centrifugo {
    /// `base` is the server's origin (`--url`), `api_key` its `http_api.key`; tokens are signed
    /// with the `Api`'s secret (Centrifugo's `client.token.hmac_secret_key`).
    pub fn new(api: Api, base: &Url, api_key: &str) -> Result<Self> {
        if api_key.is_empty() {
            bail!("--api-key (or CENTRIFUGO_API_KEY) is required with --target centrifugo");
        }
        let mut publish_url = base.clone();
        publish_url.set_path("/api/publish");
        let mut ws = base.clone();
        ws.set_path("/connection/websocket");
        ws.set_scheme("ws")
            .map_err(|()| anyhow::anyhow!("cannot make a ws:// URL of {base}"))?;
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .connect_timeout(Duration::from_secs(5))
            .timeout(crate::api::REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            api,
            http,
            publish_url,
            ws_url: ws.into(),
            api_key: api_key.to_owned(),
            run_id: format!("{:08x}", rand_u32()),
        })
    }
}

/// A per-run channel prefix, so runs against one server never share channels.
fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

#[derive(Deserialize)]
struct ApiReply {
    #[serde(default)]
    result: Option<PublishResult>,
    #[serde(default)]
    error: Option<ProtoError>,
}

#[derive(Deserialize)]
struct PublishResult {
    #[serde(default)]
    offset: Option<u64>,
}

#[derive(Deserialize)]
struct ProtoError {
    code: u32,
}

/// The outcome of an HTTP API publish from its status and body; pure, for the unit tests.
pub fn publish_outcome(status: StatusCode, body: &[u8]) -> PublishOutcome {
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        return PublishOutcome::Rejected {
            code: format!("publish_http_{}", status.as_u16()),
        };
    }
    if status != StatusCode::OK {
        return PublishOutcome::Failed {
            code: format!("publish_http_{}", status.as_u16()),
        };
    }
    match serde_json::from_slice::<ApiReply>(body) {
        Ok(ApiReply {
            error: Some(err), ..
        }) => PublishOutcome::Failed {
            code: format!("publish_api_error_{}", err.code),
        },
        Ok(ApiReply {
            result: Some(result),
            ..
        }) => PublishOutcome::Acked { seq: result.offset },
        _ => PublishOutcome::Failed {
            code: "publish_malformed_reply".to_owned(),
        },
    }
}

#[async_trait]
impl Target for Centrifugo {
    fn name(&self) -> &'static str {
        "centrifugo"
    }

    async fn create_spaces(&self, count: usize) -> Result<Vec<String>> {
        // Channels exist as soon as used; check that the API answers with this key instead.
        let spaces: Vec<String> = (0..count)
            .map(|i| format!("{NAMESPACE}:{}-{i}", self.run_id))
            .collect();
        let resp = self
            .http
            .post(self.publish_url.as_str().replace("/publish", "/info"))
            .header("X-API-Key", &self.api_key)
            .json(&serde_json::json!({}))
            .send()
            .await
            .context("Centrifugo HTTP API (POST /api/info)")?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            bail!("Centrifugo refused the API key (401)");
        }
        if !status.is_success() {
            bail!("Centrifugo POST /api/info returned {status}");
        }
        Ok(spaces)
    }

    async fn add_members(&self, _space: &str, _users: &[usize]) -> Result<()> {
        Ok(())
    }

    async fn subscribe(
        &self,
        user: usize,
        space: &str,
        source: Option<IpAddr>,
        _via: usize,
    ) -> Result<Box<dyn Subscription>, ConnectError> {
        let token = self
            .api
            .token(user)
            .map_err(|e| ConnectError::new("token", e.to_string()))?;
        let ws = connect_ws(&self.ws_url, source, &[]).await?;
        let mut sub = CentrifugoSubscription {
            ws,
            channel: space.to_owned(),
            pending: VecDeque::new(),
        };
        let connect = serde_json::json!({ "id": 1, "connect": { "token": token } }).to_string();
        sub.handshake(connect, 1, "connect").await?;
        let subscribe =
            serde_json::json!({ "id": 2, "subscribe": { "channel": space } }).to_string();
        sub.handshake(subscribe, 2, "subscribe").await?;
        Ok(Box::new(sub))
    }

    async fn publish(&self, space: &str, content: &str, _via: usize) -> PublishOutcome {
        let body = serde_json::json!({ "channel": space, "data": { "content": content } });
        let result = self
            .http
            .post(self.publish_url.clone())
            .header("X-API-Key", &self.api_key)
            .json(&body)
            .send()
            .await;
        let resp = match result {
            Ok(resp) => resp,
            Err(err) if err.is_timeout() => return failed("publish_timeout"),
            Err(err) if err.is_connect() => return failed("publish_connect"),
            Err(_) => return failed("publish_transport"),
        };
        let status = resp.status();
        match resp.bytes().await {
            Ok(bytes) => publish_outcome(status, &bytes),
            Err(_) => failed("publish_body"),
        }
    }
}

fn failed(code: &str) -> PublishOutcome {
    PublishOutcome::Failed {
        code: code.to_owned(),
    }
}

/// One reply of the client protocol; every field the loadtest does not need is ignored.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(default)]
    id: u32,
    #[serde(default)]
    error: Option<ProtoError>,
    #[serde(default, borrow)]
    push: Option<Push<'a>>,
    #[serde(default)]
    connect: Option<IgnoredAny>,
    #[serde(default)]
    subscribe: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Push<'a> {
    #[serde(default, borrow)]
    channel: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, rename = "pub")]
    publication: Option<Publication<'a>>,
    #[serde(default)]
    disconnect: Option<Disconnect>,
}

#[derive(Deserialize)]
struct Publication<'a> {
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
    #[serde(default)]
    offset: Option<u64>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Disconnect {
    #[serde(default)]
    code: u32,
}

/// One line (one reply) of a client-protocol frame, for a subscription to `channel`.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The server's ping; answer `{}`.
    Ping,
    /// The reply to command `id` (ok, or failed with the error code).
    Reply {
        id: u32,
        error: Option<u32>,
    },
    Incoming(Incoming),
}

/// Classifies one line of a frame; pure, so unit-tested on raw replies.
pub fn classify_line(line: &str, channel: &str) -> Line {
    let Ok(reply) = serde_json::from_str::<Reply>(line) else {
        return Line::Incoming(Incoming::Malformed("malformed_frame"));
    };
    if reply.id != 0 {
        return Line::Reply {
            id: reply.id,
            error: reply.error.map(|e| e.code),
        };
    }
    let Some(push) = reply.push else {
        if reply.error.is_none() && reply.connect.is_none() && reply.subscribe.is_none() {
            return Line::Ping;
        }
        return Line::Incoming(Incoming::Malformed("unexpected_reply"));
    };
    if let Some(disconnect) = push.disconnect {
        return Line::Incoming(Incoming::Ended(format!("disconnect_{}", disconnect.code)));
    }
    let Some(publication) = push.publication else {
        // Join/leave/unsubscribe/messages: nothing the loadtest subscribed for.
        return Line::Incoming(Incoming::Other);
    };
    if push.channel.as_deref() != Some(channel) {
        return Line::Incoming(Incoming::Foreign);
    }
    let sent_micros = publication
        .data
        .and_then(|d| d.content)
        .and_then(|c| stats::parse_sent_micros(&c));
    Line::Incoming(Incoming::Delivery {
        seq: publication.offset,
        sent_micros,
    })
}

struct CentrifugoSubscription {
    ws: Ws,
    channel: String,
    /// Lines of the last frame not yet returned.
    pending: VecDeque<Incoming>,
}

impl CentrifugoSubscription {
    /// Sends a command and waits for its reply; pings and early pushes are handled on the way.
    async fn handshake(
        &mut self,
        command: String,
        id: u32,
        what: &str,
    ) -> Result<(), ConnectError> {
        self.ws
            .send(Message::text(command))
            .await
            .map_err(|e| ConnectError::new(format!("send_{what}"), e.to_string()))?;
        let deadline = tokio::time::Instant::now() + HANDSHAKE_STEP_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| ConnectError::new(format!("{what}_timeout"), "no reply"))?;
            let text = match next {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Err(ConnectError::new(
                        close_code(frame.as_ref()),
                        format!("closed during {what}"),
                    ));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ConnectError::new("ws_error", e.to_string())),
                None => return Err(ConnectError::new("eof", format!("during {what}"))),
            };
            let mut done = None;
            for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
                match classify_line(line, &self.channel) {
                    Line::Ping => self.pong().await,
                    Line::Reply { id: got, error } if got == id => {
                        done = Some(match error {
                            None => Ok(()),
                            Some(code) => Err(ConnectError::new(
                                format!("{what}_error_{code}"),
                                line.to_owned(),
                            )),
                        });
                    }
                    Line::Reply { .. } => {}
                    Line::Incoming(incoming) => self.pending.push_back(incoming),
                }
            }
            if let Some(done) = done {
                return done;
            }
        }
    }

    async fn pong(&mut self) {
        // A failed write shows up as the connection's end on the next read.
        let _ = self.ws.send(Message::text("{}")).await;
    }
}

#[async_trait]
impl Subscription for CentrifugoSubscription {
    async fn next(&mut self) -> Incoming {
        loop {
            if let Some(incoming) = self.pending.pop_front() {
                return incoming;
            }
            let text = match self.ws.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Incoming::Ended(close_code(frame.as_ref()));
                }
                Some(Ok(Message::Binary(_))) => return Incoming::Malformed("binary_frame"),
                Some(Ok(_)) => return Incoming::Other,
                Some(Err(_)) => return Incoming::Ended("ws_error".to_owned()),
                None => return Incoming::Ended("eof".to_owned()),
            };
            for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
                match classify_line(line, &self.channel) {
                    Line::Ping => self.pong().await,
                    Line::Reply { .. } => self.pending.push_back(Incoming::Other),
                    Line::Incoming(incoming) => self.pending.push_back(incoming),
                }
            }
        }
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_publications_pings_and_replies() {
        let ch = "bench:r-0";
        assert_eq!(classify_line("{}", ch), Line::Ping);
        assert_eq!(
            classify_line(
                r#"{"id":1,"connect":{"client":"c","version":"6","ping":25,"pong":true}}"#,
                ch
            ),
            Line::Reply { id: 1, error: None }
        );
        assert_eq!(
            classify_line(
                r#"{"id":2,"error":{"code":103,"message":"permission denied"}}"#,
                ch
            ),
            Line::Reply {
                id: 2,
                error: Some(103)
            }
        );
        assert_eq!(
            classify_line(
                r#"{"push":{"channel":"bench:r-0","pub":{"data":{"content":"lt:1234 xxx"},"offset":7}}}"#,
                ch
            ),
            Line::Incoming(Incoming::Delivery {
                seq: Some(7),
                sent_micros: Some(1234)
            })
        );
        assert_eq!(
            classify_line(
                r#"{"push":{"channel":"bench:r-1","pub":{"data":{"content":"lt:1"},"offset":1}}}"#,
                ch
            ),
            Line::Incoming(Incoming::Foreign)
        );
        assert_eq!(
            classify_line(
                r#"{"push":{"channel":"bench:r-0","pub":{"data":"text"}}}"#,
                ch
            ),
            Line::Incoming(Incoming::Malformed("malformed_frame"))
        );
        assert_eq!(
            classify_line(r#"{"push":{"channel":"bench:r-0","join":{"info":{}}}}"#, ch),
            Line::Incoming(Incoming::Other)
        );
        assert_eq!(
            classify_line(
                r#"{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}"#,
                ch
            ),
            Line::Incoming(Incoming::Ended("disconnect_3001".into()))
        );
        assert_eq!(
            classify_line("garbage", ch),
            Line::Incoming(Incoming::Malformed("malformed_frame"))
        );
        assert_eq!(
            classify_line(r#"{"error":{"code":1,"message":"x"}}"#, ch),
            Line::Incoming(Incoming::Malformed("unexpected_reply"))
        );
    }

    #[test]
    fn publish_replies() {
        assert_eq!(
            publish_outcome(StatusCode::OK, br#"{"result":{"offset":3,"epoch":"e"}}"#),
            PublishOutcome::Acked { seq: Some(3) }
        );
        assert_eq!(
            publish_outcome(StatusCode::OK, br#"{"result":{}}"#),
            PublishOutcome::Acked { seq: None }
        );
        assert_eq!(
            publish_outcome(
                StatusCode::OK,
                br#"{"error":{"code":102,"message":"unknown channel"}}"#
            ),
            PublishOutcome::Failed {
                code: "publish_api_error_102".into()
            }
        );
        assert_eq!(
            publish_outcome(StatusCode::UNAUTHORIZED, b""),
            PublishOutcome::Failed {
                code: "publish_http_401".into()
            }
        );
        assert_eq!(
            publish_outcome(StatusCode::SERVICE_UNAVAILABLE, b""),
            PublishOutcome::Rejected {
                code: "publish_http_503".into()
            }
        );
        assert_eq!(
            publish_outcome(StatusCode::OK, b"nope"),
            PublishOutcome::Failed {
                code: "publish_malformed_reply".into()
            }
        );
    }
}
