//! The edge's one HTTP service: what reaches the listener goes to a realtime protocol's upgrade
//! (`/v1/stream`, the native stream; `/socket.io/`, Socket.IO) or to the warp REST routes.
//! Realtime upgrades are answered here, below warp, because they hand the socket to a session
//! task (see [`crate::stream`] and [`crate::socketio`]). Before either, the route table
//! ([`crate::routes::table`]) refuses a path no route serves (404) or a method it does not serve
//! (405 with `Allow`).
//!
//! With traces on, a REST request starts a trace when it is sampled (as its W3C `traceparent`
//! says, else at `--trace-sample-ratio`): it then runs in an `http.request` span, child of that
//! `traceparent`, and the response carries the span's own `traceparent`, so a client can find
//! the trace of its request. Any other request (and every one with traces off) takes the plain
//! path, with no span.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;

use futures::future::Either;
use hyper::Request;
use hyper::body::Incoming;
use hyper::service::Service;
use spacecast_observability::trace::{self, TraceParent};
use tracing::Instrument;
use warp::reply::Response;

use crate::app::AppRef;
use crate::socketio::SocketIoEdge;

/// The future of a Socket.IO upgrade (one per connection, so boxed), or of a traced REST request
/// (boxed only when traces are on).
type Boxed = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The REST service (warp's) plus the realtime upgrades.
#[derive(Clone)]
pub struct Edge<S> {
    app: AppRef,
    rest: S,
    socketio: SocketIoEdge,
}

impl<S> Edge<S> {
    pub fn new(app: AppRef, rest: S, socketio: SocketIoEdge) -> Self {
        Edge {
            app,
            rest,
            socketio,
        }
    }
}

impl<S> Service<Request<Incoming>> for Edge<S>
where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Either<Ready<Result<Response, Infallible>>, Boxed>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let path = req.uri().path();
        // The route table first: an unknown path is 404, a method the path does not serve 405
        // with `Allow`, whatever protocol would have answered it.
        if let Some(refused) = crate::routes::table::refuse(req.method(), path) {
            return Either::Right(Either::Left(ready(Ok(refused))));
        }
        if path == crate::stream::PATH {
            Either::Right(Either::Left(ready(Ok(crate::stream::upgrade(
                &self.app, req,
            )))))
        } else if SocketIoEdge::handles(path) {
            Either::Right(Either::Right(self.socketio.upgrade(&self.app, req)))
        } else {
            let sampled = self.app.config.exported_trace_ratio.is_some_and(|ratio| {
                let tp = req.headers().get("traceparent");
                trace::sample_request(tp.and_then(|v| v.to_str().ok()), ratio)
            });
            if !sampled {
                return Either::Left(self.rest.call(req));
            }
            let span = tracing::debug_span!(
                "http.request",
                http.request.method = %req.method(),
                url.path = path,
                http.response.status_code = tracing::field::Empty,
            );
            trace::extract(&span, |k| {
                req.headers().get(k).and_then(|v| v.to_str().ok())
            });
            let fut = span.in_scope(|| self.rest.call(req));
            Either::Right(Either::Right(Box::pin(async move {
                let Ok(mut res) = fut.instrument(span.clone()).await;
                span.record(
                    "http.response.status_code",
                    i64::from(res.status().as_u16()),
                );
                if let Some(tp) = TraceParent::of(&span)
                    && let Ok(v) = hyper::header::HeaderValue::from_str(&tp.header())
                {
                    res.headers_mut().insert("traceparent", v);
                }
                Ok(res)
            })))
        }
    }
}
