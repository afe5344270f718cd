//! Media downloads. No `Authorization`: the random id in `media_url` is the capability (see
//! `crate::media`).

use std::time::Instant;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::HeaderValue;
use warp::reply::Response;

use super::{respond, started, with_app};
use crate::app::AppRef;
use crate::error::ApiError;

/// The media routes. Building them also starts the media sweeper
/// ([`crate::media::spawn_sweeper`]): the media routes own the files' lifetime, and the server
/// builds its routes exactly once, inside its runtime.
pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    crate::media::spawn_sweeper(app.clone());
    warp::path!("api" / "media" / String)
        .and(warp::get())
        .and(with_app(app))
        .and(started())
        .then(|id: String, app: AppRef, t: Instant| {
            respond(app.clone(), "GET /api/media/:id", t, get_media(app, id))
        })
        .boxed()
}

/// `GET /api/media/{media_id}` → the file, with the content type its bytes identify and a
/// long-lived cache header (media never changes). Needs no space lookup, so any node sharing the
/// media store serves any upload; 503 `store_unavailable` when the store fails.
async fn get_media(app: AppRef, id: String) -> Result<Response, ApiError> {
    let media_id: uuid::Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found("Media not found"))?;
    let (bytes, content_type) = app
        .media
        .load(media_id)
        .await
        .map_err(|e| crate::media::failed(&app, "read", e))?
        .ok_or_else(|| ApiError::not_found("Media not found"))?;
    let mut res = Response::new(bytes.into());
    let h = res.headers_mut();
    h.insert("content-type", HeaderValue::from_static(content_type));
    h.insert(
        "cache-control",
        // The bytes never change, but the file is deleted with its message: caches may keep it
        // at most an hour after that, not a year.
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}
