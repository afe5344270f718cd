//! The edge's one HTTP service: what reaches the listener goes to a realtime protocol's upgrade
//! (`/v1/stream`; Socket.IO later) or to the warp REST routes. Realtime upgrades are answered
//! here, below warp, because they hand the raw socket to a session task (see [`crate::stream`]).

use std::convert::Infallible;
use std::future::{Ready, ready};

use futures::future::Either;
use hyper::Request;
use hyper::body::Incoming;
use hyper::service::Service;
use warp::reply::Response;

use crate::app::AppRef;

/// The REST service (warp's) plus the realtime upgrades.
#[derive(Clone)]
pub struct Edge<S> {
    app: AppRef,
    rest: S,
}

impl<S> Edge<S> {
    pub fn new(app: AppRef, rest: S) -> Self {
        Edge { app, rest }
    }
}

impl<S> Service<Request<Incoming>> for Edge<S>
where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if req.uri().path() == crate::stream::PATH {
            Either::Right(ready(Ok(crate::stream::upgrade(&self.app, req))))
        } else {
            Either::Left(self.rest.call(req))
        }
    }
}
