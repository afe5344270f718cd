//! Spacecast's Socket.IO surface (the Space7 app's realtime, `/socket.io/`): spaces, joins and
//! publishes exactly as [`super::spacecast`] (REST, 201 once durable); subscribers speak
//! Engine.IO v4 / Socket.IO v5 over the websocket transport:
//! `0{…}` (open) ←, `40{"token":…}` → `40{"sid":…}` ←, `42["join_space","<space>"]` →
//! `42["joined_space",{…}]` ←, then one `42["receive_message",{"space_id","message":{…,"seq"}}]`
//! per publication; Engine.IO pings (`2`) are answered (`3`).
//!
//! The client is written here, a few dozen lines of protocol, rather than taken from a crate:
//! the load generator needs no polling, reconnection, acknowledgements or binary packets, and
//! must read frames as cheaply as its native client does, so that the two measure the server.
//! The maintained Rust client, `rust_socketio`, is callback-based and depends on `native-tls`
//! (OpenSSL on Linux), which this tree keeps out.

use std::{borrow::Cow, net::IpAddr};

use anyhow::Result;
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use super::{
    CLOSE_TIMEOUT, ConnectError, HANDSHAKE_STEP_TIMEOUT, Incoming, PublishOutcome, Subscription,
    Target, Ws, close_code, connect_ws, spacecast::Spacecast,
};
use crate::{api::Api, nodes::Nodes, stats};

/// The native target for everything but the subscriptions.
pub struct SocketIo {
    native: Spacecast,
    api: Api,
    subscribe: Vec<Api>,
}

impl SocketIo {
    pub fn new(api: Api, nodes: &Nodes) -> Result<Self> {
        Ok(Self {
            native: Spacecast::new(api.clone(), nodes)?,
            subscribe: nodes.subscribe.iter().map(|u| api.at(u)).collect(),
            api,
        })
    }
}

#[async_trait]
impl Target for SocketIo {
    fn name(&self) -> &'static str {
        "socketio"
    }

    async fn create_spaces(&self, count: usize) -> Result<Vec<String>> {
        self.native.create_spaces(count).await
    }

    async fn add_members(&self, space: &str, users: &[usize]) -> Result<()> {
        self.native.add_members(space, users).await
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
        let node = Spacecast::via(&self.subscribe, &self.api, via);
        let mut ws = connect_ws(&node.socketio_url(), source, &[]).await?;
        let open = next_text(&mut ws, "open").await?;
        if !open.starts_with("0{") {
            return Err(ConnectError::new("open_malformed", open));
        }
        let connect = format!("40{}", serde_json::json!({ "token": token }));
        send(&mut ws, connect, "send_connect").await?;
        let answer = next_text(&mut ws, "connect").await?;
        if let Some(err) = answer.strip_prefix("44") {
            return Err(ConnectError::new("connect_error", err.to_owned()));
        }
        if !answer.starts_with("40") {
            return Err(ConnectError::new("connect_malformed", answer));
        }
        let join = format!("42{}", serde_json::json!(["join_space", space]));
        send(&mut ws, join, "send_join").await?;
        loop {
            let text = next_text(&mut ws, "joined").await?;
            match event(&text) {
                Some(Event::Joined { space_id }) if space_id == space => break,
                Some(Event::Error { code }) => {
                    return Err(ConnectError::new(format!("joined_error_{code}"), text));
                }
                _ => {}
            }
        }
        Ok(Box::new(SocketIoSubscription {
            ws,
            space: space.to_owned(),
        }))
    }

    async fn publish(&self, space: &str, content: &str, via: usize) -> PublishOutcome {
        self.native.publish(space, content, via).await
    }
}

async fn send(ws: &mut Ws, text: String, code: &str) -> Result<(), ConnectError> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| ConnectError::new(code, e.to_string()))
}

/// The next text frame during the handshake (answering pings), within the step deadline.
async fn next_text(ws: &mut Ws, what: &str) -> Result<String, ConnectError> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_STEP_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| ConnectError::new(format!("{what}_timeout"), "no answer"))?;
        match next {
            Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                send(ws, "3".to_owned(), "send_pong").await?;
            }
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                return Err(ConnectError::new(
                    close_code(frame.as_ref()),
                    format!("closed while waiting for {what}"),
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(ConnectError::new("ws_error", err.to_string())),
            None => return Err(ConnectError::new("eof", format!("waiting for {what}"))),
        }
    }
}

/// The server events the load generator looks at.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Joined { space_id: String },
    Error { code: String },
    Other,
}

/// `42["joined_space",…]` / `42["spacecast_error",…]` / another event; `None`: not an event.
/// (Handshake only: parsed into a `Value`, as nothing here is per delivery.)
fn event(text: &str) -> Option<Event> {
    let (name, data): (String, serde_json::Value) =
        serde_json::from_str(text.strip_prefix("42")?).ok()?;
    let field = |k: &str| data.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Some(match &*name {
        "joined_space" => Event::Joined {
            space_id: field("space_id")?,
        },
        "spacecast_error" => Event::Error {
            code: field("code").unwrap_or_else(|| "unknown".to_owned()),
        },
        _ => Event::Other,
    })
}

/// `42["receive_message",{"space_id","message":{"seq","content",…}}]`: the fields looked at.
#[derive(Deserialize)]
struct Receive<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Option<ReceivePayload<'a>>,
);

#[derive(Deserialize)]
struct ReceivePayload<'a> {
    #[serde(default, borrow)]
    space_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<ReceivedMessage<'a>>,
}

#[derive(Deserialize)]
struct ReceivedMessage<'a> {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

/// Classifies one text frame of a subscription to `space`; pure, so unit-tested on raw frames.
pub fn classify(text: &str, space: &str) -> Incoming {
    let Some(packet) = text.strip_prefix("42") else {
        // Engine.IO control packets (pings are answered by the caller) and Socket.IO packets
        // other than events.
        return match text.as_bytes().first() {
            Some(b'0'..=b'6') => Incoming::Other,
            _ => Incoming::Malformed("malformed_packet"),
        };
    };
    let Ok(Receive(name, payload)) = serde_json::from_str::<Receive>(packet) else {
        return Incoming::Malformed("malformed_event");
    };
    match &*name {
        "receive_message" => {}
        "spacecast_error" => return Incoming::Malformed("error_event"),
        _ => return Incoming::Other,
    }
    let Some(payload) = payload else {
        return Incoming::Malformed("event_without_payload");
    };
    if payload.space_id.as_deref() != Some(space) {
        return Incoming::Foreign;
    }
    let Some(message) = payload.message else {
        return Incoming::Malformed("receive_without_message");
    };
    let Some(seq) = message.seq else {
        return Incoming::Malformed("message_without_seq");
    };
    let sent_micros = message.content.and_then(|c| stats::parse_sent_micros(&c));
    Incoming::Delivery {
        seq: Some(seq),
        sent_micros,
    }
}

struct SocketIoSubscription {
    ws: Ws,
    space: String,
}

#[async_trait]
impl Subscription for SocketIoSubscription {
    async fn next(&mut self) -> Incoming {
        loop {
            return match self.ws.next().await {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                    if self.ws.send(Message::text("3")).await.is_err() {
                        return Incoming::Ended("ws_error".to_owned());
                    }
                    continue;
                }
                Some(Ok(Message::Text(text))) if text.as_str().starts_with('1') => {
                    Incoming::Ended("engineio_close".to_owned())
                }
                Some(Ok(Message::Text(text))) => classify(&text, &self.space),
                Some(Ok(Message::Close(frame))) => Incoming::Ended(close_code(frame.as_ref())),
                Some(Ok(Message::Binary(_))) => Incoming::Malformed("binary_frame"),
                Some(Ok(_)) => Incoming::Other,
                Some(Err(_)) => Incoming::Ended("ws_error".to_owned()),
                None => Incoming::Ended("eof".to_owned()),
            };
        }
    }

    async fn close(&mut self) {
        // A Socket.IO disconnect, then the WebSocket close.
        let _ = self.ws.send(Message::text("41")).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(space: &str, seq: u64, content: &str) -> String {
        format!(
            "42{}",
            serde_json::json!(["receive_message", {
                "space_id": space,
                "message": {"message_id": "m", "space_id": space, "seq": seq, "content": content},
            }])
        )
    }

    #[test]
    fn classifies_deliveries_and_other_packets() {
        assert_eq!(
            classify(&receive("sp", 5, "lt:1000 xx"), "sp"),
            Incoming::Delivery {
                seq: Some(5),
                sent_micros: Some(1000)
            }
        );
        assert_eq!(
            classify(&receive("sp", 6, "hello"), "sp"),
            Incoming::Delivery {
                seq: Some(6),
                sent_micros: None
            }
        );
        assert_eq!(
            classify(&receive("other", 1, "lt:1"), "sp"),
            Incoming::Foreign
        );
        let typing = r#"42["typing",{"space_id":"sp","user_id":"u"}]"#;
        assert_eq!(classify(typing, "sp"), Incoming::Other);
        assert_eq!(classify("3", "sp"), Incoming::Other);
        assert_eq!(
            classify(r#"42["spacecast_error",{"code":"x"}]"#, "sp"),
            Incoming::Malformed("error_event")
        );
        assert_eq!(
            classify("42not json", "sp"),
            Incoming::Malformed("malformed_event")
        );
        assert_eq!(classify("x", "sp"), Incoming::Malformed("malformed_packet"));
        assert_eq!(
            classify(
                r#"42["receive_message",{"space_id":"sp","message":{}}]"#,
                "sp"
            ),
            Incoming::Malformed("message_without_seq")
        );
        assert_eq!(
            classify(r#"42["receive_message",null]"#, "sp"),
            Incoming::Malformed("event_without_payload")
        );
    }

    #[test]
    fn handshake_events_are_recognised() {
        assert_eq!(
            event(r#"42["joined_space",{"space_id":"sp","head_seq":0}]"#),
            Some(Event::Joined {
                space_id: "sp".into()
            })
        );
        assert_eq!(
            event(r#"42["spacecast_error",{"code":"not_found","error":"x"}]"#),
            Some(Event::Error {
                code: "not_found".into()
            })
        );
        assert_eq!(event(r#"42["typing",{}]"#), Some(Event::Other));
        assert_eq!(event("40{}"), None);
    }
}
