//! Spacecast's native surface: spaces created and joined over REST, sends acknowledged by
//! `POST /api/messages/{space}` (201 only once durable), deliveries over `GET /v1/stream`
//! (`hello`, `join` → `joined`, then `event` frames with the space's `seq`; CONTRACT.md §6).

use std::{borrow::Cow, net::IpAddr};

use anyhow::{Context, Result};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt, TryStreamExt, stream};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use super::{
    CLOSE_TIMEOUT, ConnectError, HANDSHAKE_STEP_TIMEOUT, Incoming, PublishOutcome, Subscription,
    Target, Ws, close_code, connect_ws,
};
use crate::{
    api::{Api, SendOutcome},
    nodes::Nodes,
    stats,
};

/// Concurrent REST requests while joining members.
const SETUP_CONCURRENCY: usize = 50;

/// User 0 creates the spaces and publishes; subscribers are users 1 and up.
///
/// Against a cluster: setup (spaces, memberships) goes through the first `--url`, publishes
/// through the send nodes and subscriptions through the subscribe nodes (see [`crate::nodes`]).
pub struct Spacecast {
    api: Api,
    send: Vec<Api>,
    subscribe: Vec<Api>,
    publisher_token: String,
}

impl Spacecast {
    pub fn new(api: Api, nodes: &Nodes) -> Result<Self> {
        let publisher_token = api.token(0)?;
        Ok(Self {
            send: nodes.send.iter().map(|u| api.at(u)).collect(),
            subscribe: nodes.subscribe.iter().map(|u| api.at(u)).collect(),
            api,
            publisher_token,
        })
    }

    /// Server `via mod n` of `list`, or `fallback` when the list is empty (one server).
    pub(super) fn via<'a>(list: &'a [Api], fallback: &'a Api, via: usize) -> &'a Api {
        if list.is_empty() {
            fallback
        } else {
            &list[via % list.len()]
        }
    }
}

#[async_trait]
impl Target for Spacecast {
    fn name(&self) -> &'static str {
        "spacecast"
    }

    async fn create_spaces(&self, count: usize) -> Result<Vec<String>> {
        let mut spaces = Vec::with_capacity(count);
        for _ in 0..count {
            let id = self
                .api
                .create_space(&self.publisher_token)
                .await
                .context("creating a space")?;
            self.api
                .join_space(&self.publisher_token, &id)
                .await
                .context("publisher joining its space")?;
            spaces.push(id);
        }
        Ok(spaces)
    }

    async fn add_members(&self, space: &str, users: &[usize]) -> Result<()> {
        let tokens: Vec<String> = users
            .iter()
            .map(|&u| self.api.token(u))
            .collect::<Result<_>>()?;
        stream::iter(tokens.into_iter().map(|token| {
            let api = self.api.clone();
            let space = space.to_owned();
            async move { api.join_space(&token, &space).await }
        }))
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .with_context(|| format!("joining {} users to space {space}", users.len()))?;
        Ok(())
    }

    async fn subscribe(
        &self,
        user: usize,
        space: &str,
        source: Option<IpAddr>,
        via: usize,
    ) -> Result<Box<dyn Subscription>, ConnectError> {
        let token = self
            .api
            .token(user)
            .map_err(|e| ConnectError::new("token", e.to_string()))?;
        let node = Self::via(&self.subscribe, &self.api, via);
        let mut ws = connect_ws(&node.stream_url(&token), source, &[]).await?;
        await_frame(&mut ws, "hello", None).await?;
        let join = serde_json::json!({ "type": "join", "space_id": space }).to_string();
        ws.send(Message::text(join))
            .await
            .map_err(|e| ConnectError::new("send_join", e.to_string()))?;
        await_frame(&mut ws, "joined", Some(space)).await?;
        Ok(Box::new(SpacecastSubscription {
            ws,
            space: space.to_owned(),
        }))
    }

    async fn publish(&self, space: &str, content: &str, via: usize) -> PublishOutcome {
        let node = Self::via(&self.send, &self.api, via);
        let url = node.messages_url(space);
        match node
            .send_message(&self.publisher_token, &url, content)
            .await
        {
            SendOutcome::Acked { seq } => PublishOutcome::Acked { seq: Some(seq) },
            SendOutcome::Rejected { status, .. } => PublishOutcome::Rejected {
                code: format!("publish_http_{status}"),
            },
            SendOutcome::Failed(kind) => PublishOutcome::Failed {
                code: format!("publish_{}", kind.replace(' ', "_").to_lowercase()),
            },
        }
    }
}

/// The fields of a server frame the loadtest looks at; others are ignored.
#[derive(Deserialize)]
struct ServerFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    space_id: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<EventData<'a>>,
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    error: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EventData<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

/// Classifies one text frame of a subscription to `space`; pure, so unit-tested on raw frames.
pub fn classify(text: &str, space: &str) -> Incoming {
    let Ok(frame) = serde_json::from_str::<ServerFrame>(text) else {
        return Incoming::Malformed("malformed_frame");
    };
    match &*frame.kind {
        "event" => {}
        "error" => return Incoming::Malformed("error_frame"),
        _ => return Incoming::Other,
    }
    if frame.space_id.as_deref() != Some(space) {
        return Incoming::Foreign;
    }
    let Some(seq) = frame.seq else {
        return Incoming::Malformed("event_without_seq");
    };
    if frame.event.as_deref() != Some("message_created") {
        return Incoming::Sequenced { seq };
    }
    let sent_micros = frame
        .data
        .and_then(|d| d.content)
        .and_then(|c| stats::parse_sent_micros(&c));
    Incoming::Delivery {
        seq: Some(seq),
        sent_micros,
    }
}

/// Reads frames until one of type `kind` (for `space`, if given) arrives.
async fn await_frame(ws: &mut Ws, kind: &str, space: Option<&str>) -> Result<(), ConnectError> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_STEP_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| ConnectError::new(format!("{kind}_timeout"), "no answer"))?;
        match next {
            Some(Ok(Message::Text(text))) => {
                let frame: ServerFrame = serde_json::from_str(&text).map_err(|_| {
                    ConnectError::new("malformed_frame", format!("waiting for {kind}: {text}"))
                })?;
                if frame.kind == "error" {
                    let code = frame.code.as_deref().unwrap_or("unknown");
                    let msg = frame
                        .error
                        .as_deref()
                        .or(frame.message.as_deref())
                        .unwrap_or("");
                    return Err(ConnectError::new(
                        format!("{kind}_error_{code}"),
                        msg.to_owned(),
                    ));
                }
                if frame.kind == kind && space.is_none_or(|s| frame.space_id.as_deref() == Some(s))
                {
                    return Ok(());
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(ConnectError::new(
                    close_code(frame.as_ref()),
                    format!("closed while waiting for {kind}"),
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(ConnectError::new("ws_error", err.to_string())),
            None => return Err(ConnectError::new("eof", format!("waiting for {kind}"))),
        }
    }
}

struct SpacecastSubscription {
    ws: Ws,
    space: String,
}

#[async_trait]
impl Subscription for SpacecastSubscription {
    async fn next(&mut self) -> Incoming {
        match self.ws.next().await {
            Some(Ok(Message::Text(text))) => classify(&text, &self.space),
            Some(Ok(Message::Close(frame))) => Incoming::Ended(close_code(frame.as_ref())),
            Some(Ok(Message::Binary(_))) => Incoming::Malformed("binary_frame"),
            // Pings are answered by the WebSocket layer.
            Some(Ok(_)) => Incoming::Other,
            Some(Err(_)) => Incoming::Ended("ws_error".to_owned()),
            None => Incoming::Ended("eof".to_owned()),
        }
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(space: &str, seq: u64, event: &str, content: &str) -> String {
        serde_json::json!({
            "type": "event",
            "space_id": space,
            "seq": seq,
            "event": event,
            "data": {
                "message_id": "m-1",
                "space_id": space,
                "seq": seq,
                "author": {"user_id": "lt-user-0"},
                "content": content,
            },
        })
        .to_string()
    }

    #[test]
    fn classifies_deliveries_and_other_events() {
        assert_eq!(
            classify(&event("sp", 5, "message_created", "lt:1000 xx"), "sp"),
            Incoming::Delivery {
                seq: Some(5),
                sent_micros: Some(1000)
            }
        );
        assert_eq!(
            classify(&event("sp", 6, "message_created", "hello"), "sp"),
            Incoming::Delivery {
                seq: Some(6),
                sent_micros: None
            }
        );
        assert_eq!(
            classify(&event("sp", 7, "message_deleted", "lt:1"), "sp"),
            Incoming::Sequenced { seq: 7 }
        );
        assert_eq!(
            classify(&event("other", 1, "message_created", "lt:1"), "sp"),
            Incoming::Foreign
        );
    }

    #[test]
    fn control_and_broken_frames() {
        let hello = r#"{"type":"hello","session_id":"s","node_id":"n"}"#;
        let typing = r#"{"type":"typing","space_id":"sp","user_id":"u"}"#;
        assert_eq!(classify(hello, "sp"), Incoming::Other);
        assert_eq!(classify(typing, "sp"), Incoming::Other);
        assert_eq!(
            classify("not json", "sp"),
            Incoming::Malformed("malformed_frame")
        );
        assert_eq!(classify("{}", "sp"), Incoming::Malformed("malformed_frame"));
        assert_eq!(
            classify(r#"{"type":"event","space_id":"sp"}"#, "sp"),
            Incoming::Malformed("event_without_seq")
        );
        assert_eq!(
            classify(r#"{"type":"error","code":"x","error":"y"}"#, "sp"),
            Incoming::Malformed("error_frame")
        );
        assert_eq!(
            classify(r#"{"type":"event","space_id":"sp","seq":-1}"#, "sp"),
            Incoming::Malformed("malformed_frame")
        );
    }

    #[test]
    fn escaped_content_is_still_parsed() {
        let text = r#"{"type":"event","space_id":"sp","seq":1,"event":"message_created","data":{"content":"lt:10 \"quoted\" \u00e9"}}"#;
        assert_eq!(
            classify(text, "sp"),
            Incoming::Delivery {
                seq: Some(1),
                sent_micros: Some(10)
            }
        );
    }
}
