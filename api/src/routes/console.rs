//! The web console: `GET /console` (also `/console/`) and `GET /console/{asset}` serve the
//! static files of `api/console/`, embedded in the binary at build time (no build step, nothing
//! fetched from elsewhere: the page works offline); `POST /console/dev-login` mints development
//! tokens, and exists only with `--console-dev-login` (404 otherwise).
//!
//! Every console response carries a strict `Content-Security-Policy` ([`csp`]): scripts, styles
//! and connections from this origin only, no inline script or style, no framing. Assets are
//! revalidated on every load (`Cache-Control: no-cache`) against a strong `ETag`, the FNV-1a hash
//! of their bytes computed at compile time, so an unchanged asset costs a 304 and a new binary's
//! assets are never served stale. A name that is not an asset is the JSON 404 of every route.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::path::Tail;
use warp::reply::Response;

use super::{BodyLimit, body_within, parse_json, read_body, respond, started, with_app};
use crate::app::AppRef;
use crate::auth;
use crate::error::{ApiError, json_response};
use crate::ratelimit::Budget;

/// One embedded file of `api/console/`.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// FNV-1a (64 bits) of `bytes`: the `ETag`.
    pub hash: u64,
}

/// FNV-1a, 64 bits: stable across builds and platforms, and a `const fn`, so every asset's
/// `ETag` is computed by the compiler. Not a security hash: it only tells versions apart.
pub const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../../console/", $name)),
            hash: fnv1a(include_bytes!(concat!("../../console/", $name))),
        }
    };
}

/// Every file of `api/console/` (a unit test checks the directory and this list agree).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("stream.js", "text/javascript; charset=utf-8"),
    asset!("chat.js", "text/javascript; charset=utf-8"),
    asset!("operator.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
];

/// The asset named `name` (`""` is the page itself).
pub fn asset(name: &str) -> Option<&'static Asset> {
    let name = if name.is_empty() { "index.html" } else { name };
    ASSETS.iter().find(|a| a.name == name)
}

/// The console's `Content-Security-Policy`: everything from this origin only (`'self'`, which
/// also covers this origin's `ws:`/`wss:` for the stream), no inline script or style, no
/// plugins, no framing, no form posts elsewhere. Images and media may also be `blob:` (the
/// preview of a picture before it is sent) and, when `--public-url` makes `media_url`s absolute,
/// from that origin.
pub fn csp(public_url: Option<&str>) -> String {
    let media_origin = public_url
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; \
         img-src 'self' blob:{media_origin}; media-src 'self' blob:{media_origin}; \
         connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// The console in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(console_page, serve_asset, dev_login_status, dev_login_doc))]
pub struct Doc;

/// Console page
///
/// The console's page, also at `/console/`. Its files are embedded in the binary (no external
/// CDN: it works offline); the page signs in with a pasted token (kept in `localStorage`) or, in
/// development, the dev-login button. Answers 304 to a matching `If-None-Match`.
#[utoipa::path(get, path = "/console", operation_id = "console", tag = "console",
    summary = "The web console (HTML page)",
    security(()),
    responses(PageAnswers))]
#[allow(dead_code)] // The document's entry; `serve_asset("")` serves it.
fn console_page() {}

/// The page's 200 and 304, with the headers every console file carries.
struct PageAnswers;
/// An asset's 200 and 304.
struct AssetAnswers;

impl utoipa::IntoResponses for PageAnswers {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        file_answers(
            "The page.",
            &["text/html"],
            "Not modified (the `If-None-Match` names the current `ETag`).",
        )
    }
}

impl utoipa::IntoResponses for AssetAnswers {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        file_answers(
            "The file.",
            &["text/javascript", "text/css", "image/svg+xml"],
            "Not modified.",
        )
    }
}

fn file_answers(
    ok: &str,
    content_types: &[&str],
    not_modified: &str,
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>
{
    use utoipa::openapi::content::Content;
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::response::ResponseBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let with_headers = |mut r: ResponseBuilder| {
        for (name, description) in [
            ("Content-Security-Policy", CSP_HEADER),
            ("ETag", ETAG_HEADER),
            ("Cache-Control", CACHE_HEADER),
        ] {
            let header = HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(description))
                .build();
            r = r.header(name, header);
        }
        r
    };
    let mut ok = with_headers(ResponseBuilder::new().description(ok));
    for ct in content_types {
        ok = ok.content(
            *ct,
            Content::new(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    let not_modified = with_headers(ResponseBuilder::new().description(not_modified));
    [("200", ok), ("304", not_modified)]
        .into_iter()
        .map(|(status, r)| (status.to_owned(), r.build().into()))
        .collect()
}

const CSP_HEADER: &str = "`default-src 'none'; script-src 'self'; style-src 'self'; img-src \
    'self' blob:; media-src 'self' blob:; connect-src 'self'; manifest-src 'self'; base-uri \
    'none'; form-action 'none'; frame-ancestors 'none'` (with `--public-url`, its origin is added \
    to `img-src` and `media-src`).";
const ETAG_HEADER: &str =
    "Strong validator: the FNV-1a hash of the file's bytes (computed at build time).";
const CACHE_HEADER: &str =
    "`no-cache`: revalidate with `If-None-Match` on every load (a match is a 304).";

crate::openapi::errors!(AssetErrors {
    404 "No such file." [not_found],
});

crate::openapi::errors!(DevLoginStatusErrors {
    404 "Development login is off." [not_found],
});

crate::openapi::errors!(DevLoginErrors {
    400 "Invalid body or username." [invalid_username, invalid_json, invalid_request],
    404 "Development login is off." [not_found],
    413 "The body exceeds 1 KiB." [payload_too_large],
    429 "The node's mint budget is spent; retry after `Retry-After` seconds." [rate_limited],
});

/// Longest dev-login body accepted.
const DEV_LOGIN_BODY_BYTES: usize = 1024;
/// Longest dev-login username, in characters.
pub const DEV_USERNAME_MAX: usize = 32;
/// Prefix of the user ids that dev login gives (`dev-<username>`).
pub const DEV_USER_PREFIX: &str = "dev-";
/// Lifetime of a dev-login token.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Dev-login mints allowed in a burst, node-wide...
const DEV_BURST: NonZeroU32 = NonZeroU32::new(10).expect("non-zero");
/// ...and the time it takes to earn one more (10 a minute, sustained).
const DEV_REFILL: Duration = Duration::from_secs(6);

fn dev_budget() -> Budget {
    Budget::new(DEV_BURST, DEV_REFILL)
}

/// A dev-login username: trimmed, 1–32 ASCII letters, digits, `_`, `-` or `.`, so the user id
/// derived from it (`dev-<username>`) is readable and passes the token rules.
///
/// # Errors
/// 400 `invalid_username` naming the rule.
pub fn dev_username(raw: Option<&str>) -> Result<String, ApiError> {
    let name = raw.map(str::trim).unwrap_or_default();
    let bad = |why: &str| ApiError::bad_request("invalid_username", why.to_owned());
    if name.is_empty() {
        return Err(bad("username is required"));
    }
    if name.chars().count() > DEV_USERNAME_MAX {
        return Err(bad("username must be at most 32 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(bad(
            "username may contain only letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(name.to_owned())
}

/// Development login: the generated secret and the node's mint budget.
struct DevLogin {
    secret: Vec<u8>,
    /// The node's mint budget: [`DEV_BURST`] at once, then one per [`DEV_REFILL`], so a loop
    /// hammering the endpoint costs a few HMACs a minute, whoever sends it.
    budget: Budget,
}

/// What the console routes share.
struct Console {
    csp: HeaderValue,
    /// `Some` only with `--console-dev-login` (validated: the generated secret is in use).
    dev: Option<DevLogin>,
}

impl Console {
    fn new(app: &AppRef) -> Self {
        let csp = HeaderValue::from_str(&csp(app.config.public_url.as_deref()))
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
        let dev = if app.config.console_dev_login {
            // The same file `serve` loaded its verifying secret from (validation refused any
            // other source of keys with this option).
            match auth::load_or_create_secret(None, &app.config.data_dir) {
                Ok(secret) => {
                    tracing::warn!(
                        "console dev login is on: anyone who reaches /console can sign in as \
                         any dev-* user (development only)"
                    );
                    Some(DevLogin {
                        secret,
                        budget: dev_budget(),
                    })
                }
                Err(e) => {
                    tracing::error!(error = %e, "console dev login disabled: cannot read the generated secret");
                    None
                }
            }
        } else {
            None
        };
        Console { csp, dev }
    }

    /// The headers every console response carries.
    fn secure(&self, mut res: Response) -> Response {
        let h = res.headers_mut();
        h.insert("content-security-policy", self.csp.clone());
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        res
    }
}

fn with_console(
    console: Arc<Console>,
) -> impl Filter<Extract = (Arc<Console>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || console.clone())
}

pub fn routes(app: AppRef) -> BoxedFilter<(Response,)> {
    let console = Arc::new(Console::new(&app));
    let get =
        warp::path("console")
            .and(warp::path::tail())
            .and(warp::get())
            .and(warp::header::optional::<String>("if-none-match"))
            .and(with_app(app.clone()))
            .and(started())
            .and(with_console(console.clone()))
            .then(
                |tail: Tail,
                 if_none_match: Option<String>,
                 app: AppRef,
                 t,
                 console: Arc<Console>| async move {
                    let name = tail.as_str();
                    if name == "dev-login" {
                        let res = respond(app, "GET /console/dev-login", t, async {
                            dev_login_status(&console)
                        })
                        .await;
                        return console.secure(res);
                    }
                    let res = respond(app, "GET /console/:asset", t, async {
                        serve_asset(name, if_none_match.as_deref())
                    })
                    .await;
                    console.secure(res)
                },
            );
    let limit: BodyLimit = |_, _| DEV_LOGIN_BODY_BYTES;
    let post = warp::path!("console" / "dev-login")
        .and(warp::post())
        .and(body_within(app.clone(), limit))
        .and(with_app(app))
        .and(started())
        .and(with_console(console))
        .and(warp::body::stream())
        .then(|app: AppRef, t, console: Arc<Console>, body| async move {
            let res = respond(app, "POST /console/dev-login", t, async {
                let dev = console.dev.as_ref().ok_or_else(not_found)?;
                let body = read_body(body, DEV_LOGIN_BODY_BYTES).await?;
                dev_login(dev, DevLoginRequest::parse(&body)?)
            })
            .await;
            console.secure(res)
        });
    get.or(post).unify().boxed()
}

fn not_found() -> ApiError {
    ApiError::not_found("Route not found")
}

/// A file of the web console
///
/// The console's ES modules, stylesheet and icon, with their content types (`text/javascript`,
/// `text/css`, `image/svg+xml`); 304 when `If-None-Match` names its `ETag`. Any other name gives
/// the JSON 404. (`GET /console` and `/console/` serve the page through here too.)
#[utoipa::path(get, path = "/console/{asset}", operation_id = "consoleAsset", tag = "console",
    security(()),
    params(("asset" = String, Path, description = "A file name: `app.js`, `api.js`, `stream.js`, \
        `chat.js`, `operator.js`, `dom.js`, `style.css`, `icon.svg`, `index.html`.")),
    responses(AssetAnswers, AssetErrors))]
fn serve_asset(name: &str, if_none_match: Option<&str>) -> Result<Response, ApiError> {
    let asset = asset(name).ok_or_else(|| ApiError::not_found("Console asset not found"))?;
    let etag = format!("\"{:016x}\"", asset.hash);
    let fresh = if_none_match.is_some_and(|v| {
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*")
    });
    let mut res = if fresh {
        let mut r = Response::new(Vec::new().into());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(asset.bytes.into());
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static(asset.content_type));
        r
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert("etag", v);
    }
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// Whether development login is on
///
/// 200 when development login is on (the console then shows its dev-login button), else 404.
/// Exists only when the server runs with `--console-dev-login` (`SPACECAST_CONSOLE_DEV_LOGIN`,
/// TOML `console_dev_login`), which is off by default and refused at start together with
/// `--jwt-secret`, `--jwt-public-key` or `--nats-url` (it needs the secret the server generated
/// into its data dir); otherwise 404 `not_found`. Development only: anyone who reaches it can
/// sign in as any `dev-*` user.
#[utoipa::path(get, path = "/console/dev-login", operation_id = "devLoginStatus", tag = "console",
    security(()),
    responses(
        (status = 200, description = "Development login is on.", body = DevLoginStatus),
        DevLoginStatusErrors,
    ))]
fn dev_login_status(console: &Console) -> Result<Response, ApiError> {
    console.dev.as_ref().ok_or_else(not_found)?;
    Ok(json_response(
        StatusCode::OK,
        &DevLoginStatus {
            dev_login: true,
            user_id_prefix: DEV_USER_PREFIX,
            username_max_chars: DEV_USERNAME_MAX,
            username_pattern: DEV_USERNAME_PATTERN,
        },
    ))
}

/// What the console needs to offer dev login.
#[derive(Serialize, ToSchema)]
struct DevLoginStatus {
    /// Always true (the answer is 404 when dev login is off).
    dev_login: bool,
    /// `dev-`: dev login's user ids are this prefix and the username.
    user_id_prefix: &'static str,
    username_max_chars: usize,
    /// The username rule, as a regular expression.
    username_pattern: &'static str,
}

/// [`dev_username`]'s rule as a pattern (documents and the console use it).
const DEV_USERNAME_PATTERN: &str = "^[A-Za-z0-9_.-]{1,32}$";

/// Mint a development token (development only)
///
/// Exists only when the server runs with `--console-dev-login` (`SPACECAST_CONSOLE_DEV_LOGIN`,
/// TOML `console_dev_login`), which is off by default and refused at start together with
/// `--jwt-secret`, `--jwt-public-key` or `--nats-url` (it needs the secret the server generated
/// into its data dir); otherwise 404 `not_found`. Development only: anyone who reaches it can
/// sign in as any `dev-*` user. At most 10 tokens at once per node, then one every 6 s (429
/// beyond).
#[utoipa::path(post, path = "/console/dev-login", operation_id = "devLogin", tag = "console",
    security(()),
    request_body = DevLoginRequest,
    responses(
        (status = 200, description = "A token for `dev-<username>`.", body = DevLoginResult),
        DevLoginErrors,
    ))]
#[allow(dead_code)] // The document's entry; `routes` serves it with `dev_login`.
fn dev_login_doc() {}

/// The body of `POST /console/dev-login`: a JSON object (an array is refused, though serde
/// would read one as a struct) whose `username` is a string, and nothing else (the document
/// says `additionalProperties: false`).
struct DevLoginRequest {
    username: Option<String>,
}

impl utoipa::PartialSchema for DevLoginRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some(
                "Any other field gives 400 `invalid_request` (the body is at most 1 KiB).",
            ))
            .property(
                "username",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(DEV_USERNAME_PATTERN))
                    .description(Some("Trimmed; 1–32 ASCII letters, digits, `_`, `-`, `.`.")),
            )
            .required("username")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for DevLoginRequest {}

impl DevLoginRequest {
    /// # Errors
    /// 400 `invalid_json` for a body that is not a JSON object, `invalid_request` for a field
    /// other than `username`, `invalid_username` for a `username` that is not a string.
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let object: serde_json::Map<String, serde_json::Value> = parse_json(body)?;
        if let Some(other) = object.keys().find(|k| *k != "username") {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("Unknown field {other:?}: the body is {{\"username\": ...}}"),
            ));
        }
        let username = match object.get("username") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_username",
                    "username must be a string",
                ));
            }
        };
        Ok(DevLoginRequest { username })
    }
}

/// `POST /console/dev-login` `{username}` → `{token, user_id, username, expires_at}`: a 24-hour
/// HS256 token for the user `dev-<username>` (the same name always gives the same user), signed
/// with the generated secret. 400 `invalid_username`, 429 `rate_limited` + `Retry-After` beyond
/// the node's budget (10 at once, then 10 a minute), 404 when dev login is off.
fn dev_login(dev: &DevLogin, req: DevLoginRequest) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, &mint_dev_token(dev, req)?))
}

/// The body of a successful dev login.
#[derive(Serialize, ToSchema)]
struct DevLoginResult {
    /// An HS256 JWT signed with the generated secret, valid 24 h.
    token: String,
    /// `dev-<username>`: the same name always gives the same user.
    user_id: String,
    username: String,
    /// The token's `exp` (seconds since the Unix epoch).
    expires_at: u64,
}

/// Signs a token for `dev-<username>`, within the node's budget.
fn mint_dev_token(dev: &DevLogin, req: DevLoginRequest) -> Result<DevLoginResult, ApiError> {
    let username = dev_username(req.username.as_deref())?;
    let wait = dev.budget.take();
    if let Err(wait) = wait {
        return Err(ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many dev logins on this node; retry shortly",
            )
        });
    }
    let user_id = format!("{DEV_USER_PREFIX}{username}");
    let token = auth::mint(&dev.secret, &user_id, &username, None, DEV_TOKEN_TTL)
        .map_err(|e| ApiError::internal(format!("cannot sign a token: {e}")))?;
    let expires_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + DEV_TOKEN_TTL.as_secs();
    Ok(DevLoginResult {
        token,
        user_id,
        username,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_console_file_is_embedded_with_a_known_type() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/console");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("api/console exists")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "api/console/ and ASSETS must list the same files"
        );
        for a in ASSETS {
            let ext = a.name.rsplit('.').next().unwrap();
            let expected = match ext {
                "html" => "text/html",
                "css" => "text/css",
                "js" => "text/javascript",
                "svg" => "image/svg+xml",
                other => panic!("no content type for .{other}"),
            };
            assert!(a.content_type.starts_with(expected), "{}", a.name);
            assert_eq!(a.hash, fnv1a(a.bytes));
            assert!(!a.bytes.is_empty(), "{} is empty", a.name);
        }
        assert_eq!(asset("").unwrap().name, "index.html");
        assert!(asset("nope.js").is_none() && asset("../Cargo.toml").is_none());
    }

    /// The page's guarantees that a CSP alone would only report at run time: no inline script,
    /// nothing loaded from another origin, and user text never parsed as HTML.
    #[test]
    fn the_page_loads_only_its_own_files_and_never_parses_data_as_html() {
        let html = std::str::from_utf8(asset("index.html").unwrap().bytes).unwrap();
        for (i, tag) in html
            .match_indices("<script")
            .map(|(i, _)| &html[i..])
            .enumerate()
        {
            let open = &tag[..tag.find('>').unwrap()];
            assert!(
                open.contains("src=\"/console/"),
                "script {i} must be a file of the console: {open}"
            );
        }
        for needle in [
            "http://", "https://", "//cdn", " style=", "<style", "onclick=",
        ] {
            assert!(!html.contains(needle), "index.html contains {needle:?}");
        }
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let js = std::str::from_utf8(a.bytes).unwrap();
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!js.contains(sink), "{} uses {sink}", a.name);
            }
            for line in js.lines().filter(|l| l.trim_start().starts_with("import ")) {
                assert!(
                    line.contains("from './"),
                    "{}: imports only sibling modules: {line}",
                    a.name
                );
            }
        }
    }

    #[test]
    fn the_policy_allows_only_this_origin_and_the_public_media_origin() {
        let p = csp(None);
        assert!(
            p.starts_with("default-src 'none'; script-src 'self';"),
            "{p}"
        );
        assert!(!p.contains("unsafe"), "{p}");
        assert!(p.contains("frame-ancestors 'none'") && p.contains("connect-src 'self'"));
        let p = csp(Some("https://chat.example.org/base"));
        assert!(
            p.contains("img-src 'self' blob: https://chat.example.org;"),
            "{p}"
        );
    }

    #[test]
    fn etags_answer_304_and_unknown_assets_404() {
        let a = asset("app.js").unwrap();
        let etag = format!("\"{:016x}\"", a.hash);
        let res = serve_asset("app.js", None).unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["etag"], etag.as_str());
        assert_eq!(res.headers()["cache-control"], "no-cache");
        let res = serve_asset("app.js", Some(&format!("\"x\", W/{etag}"))).unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        let res = serve_asset("app.js", Some("\"0000000000000000\"")).unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let e = serve_asset("app.js/x", None).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (404, "not_found"));
    }

    #[test]
    fn dev_usernames_are_bounded() {
        assert_eq!(dev_username(Some("  ada.l-1_ ")).unwrap(), "ada.l-1_");
        for bad in [
            None,
            Some(""),
            Some("   "),
            Some("a b"),
            Some("<script>"),
            Some("ädа"),
            Some("x\u{202e}"),
        ] {
            assert_eq!(
                dev_username(bad).unwrap_err().code,
                "invalid_username",
                "{bad:?}"
            );
        }
        assert!(dev_username(Some(&"a".repeat(32))).is_ok());
        assert_eq!(
            dev_username(Some(&"a".repeat(33))).unwrap_err().code,
            "invalid_username"
        );
        let id = format!("{DEV_USER_PREFIX}{}", "a".repeat(32));
        assert!(auth::check_user_id(&id).is_ok());
    }

    #[test]
    fn the_body_must_be_an_object_with_a_string_username() {
        assert_eq!(
            DevLoginRequest::parse(br#"{"username":"ada"}"#)
                .unwrap()
                .username
                .as_deref(),
            Some("ada")
        );
        assert!(DevLoginRequest::parse(b"{}").unwrap().username.is_none());
        assert!(DevLoginRequest::parse(b"").unwrap().username.is_none());
        for (body, code) in [
            (&br#"["ada"]"#[..], "invalid_json"),
            (b"not json", "invalid_json"),
            (br#""ada""#, "invalid_json"),
            (br#"{"username": 5}"#, "invalid_username"),
            (br#"{"username": ["ada"]}"#, "invalid_username"),
        ] {
            let e = DevLoginRequest::parse(body).err().expect("refused");
            assert_eq!(e.code, code, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_dev_login_token_verifies_as_the_derived_user() {
        let secret = b"0123456789abcdef0123456789abcdef".to_vec();
        let dev = DevLogin {
            secret: secret.clone(),
            budget: dev_budget(),
        };
        let v = mint_dev_token(
            &dev,
            DevLoginRequest {
                username: Some("ada".into()),
            },
        )
        .unwrap();
        assert_eq!(
            (v.user_id.as_str(), v.username.as_str()),
            ("dev-ada", "ada")
        );
        let auth = auth::Authenticator::new(Some(&secret), None).unwrap();
        let user = auth.verify(&v.token).unwrap();
        assert_eq!(
            (user.id(), user.profile.username.as_str()),
            ("dev-ada", "ada")
        );
    }
}
