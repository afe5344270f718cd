//! The systems a load run drives, behind one trait: Spacecast's native stream (REST sends,
//! `/v1/stream` joins), Spacecast's Socket.IO (REST sends, `/socket.io/` joins) and Centrifugo
//! v6 (HTTP server API publishes, JSON client protocol over `/connection/websocket`).
//!
//! Everything a server sends is untrusted input: a frame the protocol does not allow is reported
//! as [`Incoming::Malformed`] (counted by code), never a panic.

pub mod centrifugo;
pub mod socketio;
pub mod spacecast;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use async_trait::async_trait;
use tokio::net::{TcpSocket, TcpStream, lookup_host};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{self, client::IntoClientRequest},
};

/// Deadline of each handshake step (TCP + upgrade, then each protocol exchange).
pub const HANDSHAKE_STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for our close frame at the end.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub type Ws = WebSocketStream<TcpStream>;

/// Result of one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Acknowledged; `seq` is the message's position in its space/channel when the target says.
    Acked { seq: Option<u64> },
    /// Load shedding (429/503 and the like): the server refused early, as it should under
    /// overload. Counted apart from errors.
    Rejected { code: String },
    /// Anything else, classified by a stable code.
    Failed { code: String },
}

/// What one read from a subscription produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A publication on the subscribed space: its sequence number (if the target numbers them)
    /// and the send time embedded by the loadtest (`None`: not a loadtest message).
    Delivery {
        seq: Option<u64>,
        sent_micros: Option<u64>,
    },
    /// Another kind of sequenced event on the space (advances the seq, is not a delivery).
    Sequenced { seq: u64 },
    /// A publication for a space this subscription did not ask for.
    Foreign,
    /// A control frame or anything else that needs no bookkeeping.
    Other,
    /// A frame the protocol does not allow; the connection goes on.
    Malformed(&'static str),
    /// The connection ended; the code says how (`close_4008`, `eof`, `ws_error`, …).
    Ended(String),
}

/// Why a subscriber could not connect and subscribe.
#[derive(Debug)]
pub struct ConnectError {
    /// Stable code for the report (`connect_refused`, `handshake_http_503`, …).
    pub code: String,
    pub detail: String,
}

impl ConnectError {
    pub fn new(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// A system under test.
#[async_trait]
pub trait Target: Send + Sync {
    fn name(&self) -> &'static str;

    /// Creates `count` spaces (channels) for this run and returns their ids.
    async fn create_spaces(&self, count: usize) -> anyhow::Result<Vec<String>>;

    /// Makes users members of a space where the target has membership (Spacecast's REST join);
    /// a no-op elsewhere.
    async fn add_members(&self, space: &str, users: &[usize]) -> anyhow::Result<()>;

    /// Opens one connection as `user` from `source` (a loopback address to bind, so more than
    /// one address's worth of ports is usable) and subscribes it to `space`; returns once the
    /// server confirmed the subscription. A target with several servers connects to server
    /// `via mod n` of its subscribe list.
    async fn subscribe(
        &self,
        user: usize,
        space: &str,
        source: Option<IpAddr>,
        via: usize,
    ) -> Result<Box<dyn Subscription>, ConnectError>;

    /// Publishes `content` to `space` (through server `via mod n` of the send list, when the
    /// target has several); returns once acknowledged (or refused).
    async fn publish(&self, space: &str, content: &str, via: usize) -> PublishOutcome;
}

/// One subscribed connection.
#[async_trait]
pub trait Subscription: Send {
    /// The next thing the server sent (answers protocol pings itself).
    async fn next(&mut self) -> Incoming;
    /// Closes the connection politely (bounded by [`CLOSE_TIMEOUT`]).
    async fn close(&mut self);
}

/// The `i`-th of `n` loopback source addresses, 127.0.0.(1 + i mod n); `None` when `n` ≤ 1
/// (the kernel picks, as usual).
pub fn source_addr(i: usize, n: u32) -> Option<IpAddr> {
    if n <= 1 {
        return None;
    }
    let host = 1 + (i % n as usize) as u8;
    Some(IpAddr::from([127, 0, 0, host]))
}

/// The subscribers' WebSocket settings. tungstenite zero-fills its whole read buffer before
/// every read attempt, so its 128 KiB default would make each received frame cost the load
/// generator a 128 KiB memset; 8 KiB keeps the generator from saturating first.
fn client_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// Opens a WebSocket to `url` (ws://, loopback) from `source`, with the given extra headers.
pub async fn connect_ws(
    url: &str,
    source: Option<IpAddr>,
    headers: &[(&str, &str)],
) -> Result<Ws, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::new("bad_url", e.to_string()))?;
    for (name, value) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ConnectError::new("bad_header", e.to_string()))?;
        let value = tungstenite::http::HeaderValue::from_str(value)
            .map_err(|e| ConnectError::new("bad_header", e.to_string()))?;
        request.headers_mut().insert(name, value);
    }
    let host = request.uri().host().unwrap_or("127.0.0.1").to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let step = async {
        let addr: SocketAddr = lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| ConnectError::new("resolve", e.to_string()))?
            .next()
            .ok_or_else(|| ConnectError::new("resolve", format!("no address for {host}")))?;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| ConnectError::new(io_code("socket", &e), e.to_string()))?;
        if let Some(ip) = source {
            bind_no_port(&socket);
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| ConnectError::new(io_code("bind", &e), e.to_string()))?;
        }
        let stream = socket
            .connect(addr)
            .await
            .map_err(|e| ConnectError::new(io_code("connect", &e), e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (ws, _) = client_async_with_config(request, stream, Some(client_config()))
            .await
            .map_err(|e| match &e {
                tungstenite::Error::Http(resp) => ConnectError::new(
                    format!("handshake_http_{}", resp.status().as_u16()),
                    e.to_string(),
                ),
                _ => ConnectError::new("handshake", e.to_string()),
            })?;
        Ok(ws)
    };
    tokio::time::timeout(HANDSHAKE_STEP_TIMEOUT, step)
        .await
        .unwrap_or_else(|_| Err(ConnectError::new("connect_timeout", "TCP or upgrade")))
}

/// `IP_BIND_ADDRESS_NO_PORT`: bind the address now but pick the port at connect time, per
/// destination, so one source address is not limited to one ephemeral range for all sockets.
fn bind_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value that outlives the call. Failure only
    // means the kernel picks the port at bind time, as without the option.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn io_code(step: &str, err: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let kind = match err.kind() {
        ConnectionRefused => "refused",
        ConnectionReset => "reset",
        AddrNotAvailable | AddrInUse => "no_port",
        TimedOut => "timeout",
        _ if err.raw_os_error() == Some(libc::EMFILE) => "emfile",
        _ => "io",
    };
    format!("{step}_{kind}")
}

/// The code for a WebSocket close frame (or its absence).
pub fn close_code(frame: Option<&tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(frame) => format!("close_{}", u16::from(frame.code)),
        None => "close_none".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_cycle_over_loopback() {
        assert_eq!(source_addr(5, 1), None);
        assert_eq!(source_addr(0, 4), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(source_addr(5, 4), Some(IpAddr::from([127, 0, 0, 2])));
        assert_eq!(source_addr(253, 254), Some(IpAddr::from([127, 0, 0, 254])));
    }
}
