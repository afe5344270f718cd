//! The OpenAPI 3.1 document served at `GET /openapi.json` (and printed by `spacecast openapi`),
//! derived with utoipa from the handlers (`#[utoipa::path]` next to each one) and the wire types
//! (`#[derive(ToSchema)]` on the structs the edge serializes and parses), so it changes with the
//! code. Each route module has a `Doc` (`#[derive(OpenApi)]` listing its paths); [`document`]
//! merges them, then adds what every operation shares (the connection-level 414 / 431 / 503
//! answers, the security schemes, the shared 401 and 500 responses).
//!
//! How the rules the server enforces reach the document:
//! - lengths, bounds, enums and patterns are `#[schema(...)]` attributes on the request types,
//!   or [`rules`] functions (`#[schema(schema_with = ...)]`) for the text rules several types share;
//! - the error codes an operation can answer are declared next to its handler with
//!   [`errors!`](crate::openapi::errors), each with an example;
//! - keywords utoipa has no attribute for (`anyOf` of required fields, `dependentRequired`,
//!   `contentMediaType`) are added by `schema_with` functions through the schema's extensions.
//!
//! The route table test (`routes::table`) compares [`document`] with the served routes both
//! ways, and api/tests/schemathesis.rs runs Schemathesis against the served document.

pub mod errors;
pub mod links;
pub mod params;
pub mod rules;

use std::sync::OnceLock;

use bytes::Bytes;
use utoipa::OpenApi;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Ref, RefOr};

pub use errors::errors;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Spacecast",
        description = include_str!("intro.md"),
    ),
    servers((url = "/")),
    tags(
        (name = "spaces", description = "Space7 spaces."),
        (name = "messages", description = "Space7 messages."),
        (name = "media", description = "Media files of messages."),
        (name = "v1", description = "The native API: cursor pages, threads, edits, redactions, reactions, members, statistics."),
        (name = "realtime", description = "The native WebSocket stream and Socket.IO."),
        (name = "console", description = "The web console served by the binary, and its development login."),
        (name = "operations", description = "Health, readiness, metrics and this document; no authentication."),
    ),
    security(("bearerAuth" = [])),
    components(schemas(errors::ErrorBody)),
)]
struct Base;

/// The `POST` operation at `path`: what the route modules' modifiers amend.
pub fn post_mut<'a>(
    doc: &'a mut utoipa::openapi::OpenApi,
    path: &str,
) -> Option<&'a mut utoipa::openapi::path::Operation> {
    doc.paths.paths.get_mut(path)?.post.as_mut()
}

/// Marks the request body of `POST` at the path optional: the body may be left out (an empty
/// body is `{}`) but is never `null`, which utoipa cannot say (it writes an `Option` body as
/// `null`-or-object). Use as a constant in a `Doc`'s `modifiers(...)`.
pub struct OptionalBody(pub &'static str);

impl utoipa::Modify for OptionalBody {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(body) = post_mut(doc, self.0).and_then(|op| op.request_body.as_mut()) {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
}

/// The document, built from every route module's `Doc`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Base::openapi();
    for part in [
        crate::routes::health::Doc::openapi(),
        crate::routes::spaces::Doc::openapi(),
        crate::routes::messages::Doc::openapi(),
        crate::routes::media::Doc::openapi(),
        crate::routes::v1_messages::Doc::openapi(),
        crate::routes::v1_members::Doc::openapi(),
        crate::routes::v1_reactions::Doc::openapi(),
        crate::routes::v1_stats::Doc::openapi(),
        crate::routes::discovery::Doc::openapi(),
        crate::routes::v1_users::Doc::openapi(),
        crate::routes::notifications::Doc::openapi(),
        crate::routes::v1_reads::Doc::openapi(),
        crate::routes::v1_search::Doc::openapi(),
        crate::routes::v1_presence::Doc::openapi(),
        crate::routes::node::Doc::openapi(),
        crate::stream::Doc::openapi(),
        crate::socketio::Doc::openapi(),
        crate::routes::console::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    finish(&mut doc);
    doc
}

/// The document as served: serialized once, the bytes shared by every request.
pub fn document_json() -> Bytes {
    static JSON: OnceLock<Bytes> = OnceLock::new();
    JSON.get_or_init(|| {
        Bytes::from(serde_json::to_vec(&document()).expect("the document serializes"))
    })
    .clone()
}

/// What every operation shares.
fn finish(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "bearerAuth".into(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(BEARER))
                .build(),
        ),
    );
    components.security_schemes.insert(
        "tokenQuery".into(),
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            "token",
            "The same JWT as a `token` query parameter; accepted only by `GET /v1/stream`, \
             when no Authorization header is sent.",
        ))),
    );
    let shared: [(&str, u16, &str, &[&str]); 4] = [
        (
            "Unauthorized",
            401,
            errors::default_description(401),
            &["unauthenticated", "invalid_token", "invalid_claims"],
        ),
        (
            "InternalError",
            500,
            errors::default_description(500),
            &["internal"],
        ),
        (
            "UriTooLong",
            414,
            "The request URI is too long (the connection is closed).",
            &["uri_too_long"],
        ),
        (
            "HeadersTooLarge",
            431,
            "Too many or too large request headers (the connection is closed).",
            &["headers_too_large"],
        ),
    ];
    for (name, status, description, codes) in shared {
        components.responses.insert(
            name.into(),
            RefOr::T(errors::error_response(status, description, codes)),
        );
    }
    components.responses.insert(
        "ConnectionCap".into(),
        RefOr::T(errors::error_response_with(
            503,
            "The node is at its HTTP connection limit (`max_http_connections`); the connection \
             is closed.",
            &[("overloaded", CONNECTION_CAP_MESSAGE)],
        )),
    );
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            // `security(())` (no authentication) is written `[]`: no requirement at all.
            if let Some(security) = &mut op.security
                && security
                    .iter()
                    .all(|s| *s == SecurityRequirement::default())
            {
                security.clear();
            }
            let responses = &mut op.responses.responses;
            for response in responses.values_mut() {
                if let RefOr::T(response) = response {
                    links_in_camel_case(response);
                }
            }
            responses.insert(
                "414".into(),
                RefOr::Ref(Ref::from_response_name("UriTooLong")),
            );
            responses.insert(
                "431".into(),
                RefOr::Ref(Ref::from_response_name("HeadersTooLarge")),
            );
            match responses.get_mut("503") {
                None => {
                    responses.insert(
                        "503".into(),
                        RefOr::Ref(Ref::from_response_name("ConnectionCap")),
                    );
                }
                Some(RefOr::T(response)) => also_connection_cap(response),
                Some(RefOr::Ref(_)) => {}
            }
        }
    }
}

/// utoipa 5.5 writes a link's `operationId`, `operationRef` and `requestBody` in snake case (its
/// `Link` has no camelCase rename), which no OpenAPI tool reads: they move to the link's
/// extensions under their real names.
fn links_in_camel_case(response: &mut Response) {
    for link in response.links.values_mut() {
        let RefOr::T(link) = link else { continue };
        let extensions = link.extensions.get_or_insert_with(Default::default);
        if !link.operation_id.is_empty() {
            extensions.insert(
                "operationId".into(),
                std::mem::take(&mut link.operation_id).into(),
            );
        }
        if !link.operation_ref.is_empty() {
            extensions.insert(
                "operationRef".into(),
                std::mem::take(&mut link.operation_ref).into(),
            );
        }
        if let Some(body) = link.request_body.take() {
            extensions.insert("requestBody".into(), body);
        }
    }
}

/// A 503 an operation declares can also be the HTTP connection cap's `overloaded`.
fn also_connection_cap(response: &mut Response) {
    if let Some(content) = response.content.get_mut("application/json")
        && !content.examples.contains_key("overloaded")
    {
        response
            .description
            .push_str(" Also `overloaded` at the HTTP connection limit.");
        let example = ExampleBuilder::new()
            .value(Some(serde_json::json!({
                "error": CONNECTION_CAP_MESSAGE,
                "code": "overloaded",
            })))
            .build();
        content
            .examples
            .insert("overloaded".into(), RefOr::T(example));
    }
}

/// What the listener answers at the HTTP connection cap (`crate::listener`).
const CONNECTION_CAP_MESSAGE: &str = "Too many HTTP connections; retry shortly";

const BEARER: &str = "`Authorization: Bearer <JWT>`. Claims: the user id in `sub` or `user_id` \
    (string or number, 1–128 bytes, no whitespace, no control, format or bidi characters), \
    `username` (trimmed, at most 64 characters, no control or bidi/format characters except \
    ZWJ/ZWNJ; defaults to the user id), `picture` or `profile_picture` (an absolute \
    `https:`/`http:` URL of at most 2,048 bytes; defaults to `\"\"`), `exp` (required), `nbf` \
    and `iat` (optional; neither may be in the future), all with a 30 s leeway. Claims outside \
    these bounds give 401 `invalid_claims` naming the claim. Signed with HS256 (the server's \
    shared secret) or RS256 / ES256 / EdDSA (the configured public key). Anything else is 401.";

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::from_slice(&document_json()).expect("the document is JSON")
    }

    #[test]
    fn the_document_is_openapi_3_1_and_its_error_enum_lists_every_code() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let codes: Vec<&str> = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("the Error schema has a code enum")
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        for code in crate::error::CODES.iter().chain(errors::STREAM_ONLY_CODES) {
            assert!(codes.contains(code), "{code} missing from the Error schema");
        }
    }

    #[test]
    fn every_http_code_has_an_example_and_every_example_is_a_known_code() {
        for code in crate::error::CODES {
            assert!(
                errors::example_message(code).is_some(),
                "no example message for {code}"
            );
        }
        let doc = doc();
        let mut seen = 0;
        let mut check = |response: &serde_json::Value| {
            if let Some(examples) = response["content"]["application/json"]["examples"].as_object()
            {
                for (name, example) in examples {
                    let code = example["value"]["code"].as_str().unwrap_or_default();
                    assert_eq!(name, code, "an example is named after its code");
                    assert!(
                        crate::error::CODES.contains(&code),
                        "example {name}: unknown code {code}"
                    );
                    seen += 1;
                }
            }
        };
        for response in doc["components"]["responses"].as_object().unwrap().values() {
            check(response);
        }
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                for response in op["responses"].as_object().into_iter().flatten() {
                    check(response.1);
                }
            }
        }
        assert!(seen > 50, "examples were checked ({seen})");
    }

    #[test]
    fn every_operation_has_an_id_a_tag_and_the_connection_level_answers() {
        let doc = doc();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default();
                assert!(!id.is_empty(), "{method} {path} has no operationId");
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
                assert!(op["tags"][0].is_string(), "{id} has no tag");
                for status in ["414", "431", "503"] {
                    assert!(op["responses"].get(status).is_some(), "{id}: no {status}");
                }
            }
        }
    }

    /// Every `$ref` names a component of the document, and no component is named after a Rust
    /// primitive (a type alias such as `Seq` needs `#[schema(value_type = u64)]`).
    #[test]
    fn every_reference_resolves_and_components_have_wire_names() {
        let doc = doc();
        let text = doc.to_string();
        let mut refs = 0;
        for part in text.split("\"$ref\":\"").skip(1) {
            let target = &part[..part.find('"').expect("a closing quote")];
            let pointer = target.strip_prefix('#').expect("a local reference");
            let pointer = pointer.replace("~1", "/");
            assert!(doc.pointer(&pointer).is_some(), "unresolved $ref {target}");
            refs += 1;
        }
        assert!(refs > 50, "references were checked ({refs})");
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(
                name.starts_with(|c: char| c.is_ascii_uppercase()),
                "schema component {name} is not a wire type (a type alias without value_type?)"
            );
        }
    }

    #[test]
    fn the_unauthenticated_operations_say_so() {
        let doc = doc();
        assert_eq!(doc["security"], serde_json::json!([{"bearerAuth": []}]));
        for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
            assert_eq!(
                doc["paths"][path]["get"]["security"],
                serde_json::json!([]),
                "{path}"
            );
        }
        assert!(doc["paths"]["/v1/node"]["get"].get("security").is_none());
    }
}
