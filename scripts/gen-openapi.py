#!/usr/bin/env python3
# Generates api/openapi.json (served at GET /openapi.json). Edit this file, not the JSON, then run
#   python3 scripts/gen-openapi.py
# The error-code enum is read from api/src/error.rs (CODES), so it cannot drift from the code.
import json, re
import os
# Text rules the server enforces, as ECMA-262 patterns (the same in Python's `re`): no control
# characters (Unicode Cc: C0, DEL, C1), except tab, newline and carriage return in multi-line text.
CONTROL = "\\x00-\\x1f\\x7f-\\x9f"
MULTILINE_CONTROL = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f"
# A title: one line, no surrounding whitespace (the server trims it, then counts 3–200 characters).
TITLE_PATTERN = f"^[^\\s{CONTROL}](?:[^{CONTROL}]*[^\\s{CONTROL}])?$"
# A description: any lines; may be empty.
TEXT_PATTERN = f"^[^{MULTILINE_CONTROL}]*$"
# Message text: at least one non-whitespace character (whitespace-only text is no text).
MSGTYPE_PATTERN = "^(text|code|media|system|[a-z0-9_-]+(\\.[a-z0-9_-]+)+)$"
# A cursor is 12 base64url characters whose first byte is 0xb1 (backward) or 0xf1 (forward).
CURSOR_PATTERN = "^[s8][Q-Za-f][A-Za-z0-9_-]{10}$"
CONTENT_PATTERN = f"^[^{MULTILINE_CONTROL}]*[^\\s{MULTILINE_CONTROL}][^{MULTILINE_CONTROL}]*$"
# A hashtag: an optional leading `#`, then 1–50 characters without whitespace or control characters.
HASHTAG_PATTERN = f"^#?[^\\s#{CONTROL}][^\\s{CONTROL}]{{0,49}}$"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CODES = re.findall(r'"([a-z_]+)"', open(ROOT + '/api/src/error.rs').read().split('pub const CODES: &[&str] = &[')[1].split('];')[0])
STREAM_ONLY = ["invalid_frame", "not_joined", "too_many_spaces", "refresh_refused", "invalid_event"]

MSG = {
    "unauthenticated": "Authentication required",
    "invalid_token": "Invalid or expired token",
    "invalid_claims": "Invalid token claim `username`: must be at most 64 characters",
    "invalid_json": "Invalid JSON body: expected value at line 1 column 1",
    "invalid_request": "Invalid request",
    "empty_message": "Message must have text or media",
    "content_too_long": "content must be at most 5000 characters",
    "invalid_content": "content must not contain control characters other than tab, newline and carriage return",
    "invalid_media_type": "media_type must be \"image\", \"video\" or \"audio\"",
    "invalid_sort": "sort must be \"recent\" or \"most_appreciated\"",
    "invalid_pagination": "limit must be between 1 and 100",
    "invalid_title": "title must be 3 to 200 characters",
    "invalid_description": "description must be at most 5000 characters",
    "invalid_hashtags": "each hashtag must be 1 to 50 characters without spaces",
    "invalid_visibility": "visibility must be \"public\" or \"private\"",
    "invalid_invite": "A valid invite code is required to join this private space",
    "not_a_member": "You must be a member to send messages",
    "already_member": "Already a member",
    "forbidden": "Not authorised to delete this message",
    "not_found": "Space not found",
    "payload_too_large": "The request body exceeds 262144 bytes",
    "unsupported_media_type": "Send multipart/form-data or application/json",
    "overloaded": "Too many pending commands for this space; retry shortly",
    "store_unavailable": "Storage is temporarily unavailable; retry shortly",
    "unavailable": "The space is restarting; retry shortly",
    "shutting_down": "Server is shutting down",
    "bus_unavailable": "The cluster bus is unavailable; retry shortly",
    "internal": "Internal error",
    "too_many_connections": "At most 32 realtime connections per user; close one first",
    "method_not_allowed": "HTTP method not allowed",
    "transport_unsupported": "Only the websocket transport is served: connect with transports: [\"websocket\"]",
    "unsupported_protocol": "Only Engine.IO protocol 4 (Socket.IO v3 and later clients) is served",
    "uri_too_long": "The request URI is too long",
    "headers_too_large": "The request headers are too large",
    "media_type_mismatch": "The file was declared image/jpeg but its bytes are image/png",
    "empty_media": "The file is empty",
    "invalid_image": "The image cannot be processed: The Image's dimensions are either too small or too large",
    "expected_one_file": "Send exactly one multipart part named \"file\": several parts",
    "too_many_media": "A message carries at most 10 media",
    "invalid_media": "A media id is unknown, not yours, or already used by another message",
}

def ref(name): return {"$ref": f"#/components/schemas/{name}"}

def err(desc, codes, messages=None, retry=False):
    messages = messages or {}
    r = {
        "description": desc + " Codes: " + ", ".join(f"`{c}`" for c in codes) + ".",
        "content": {"application/json": {
            "schema": ref("Error"),
            "examples": {c: {"value": {"error": messages[c] if c in messages else MSG[c], "code": c}} for c in codes},
        }},
    }
    if retry:
        r["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    return r

def rr(name): return {"$ref": f"#/components/responses/{name}"}

ENGINE_503 = ["overloaded", "unavailable", "store_unavailable", "bus_unavailable", "shutting_down"]

def json_ok(desc, schema, links=None):
    out = {"description": desc, "content": {"application/json": {"schema": schema}}}
    if links:
        out["links"] = links
    return out

def link(operation_id, desc, **parameters):
    """An OpenAPI link: `parameters` name the target's parameters and where in this response
    their values are (`$response.body#/space_id`). Schemathesis's stateful phase follows them."""
    return {"operationId": operation_id, "description": desc, "parameters": parameters}

SPACE_LINKS = {
    "GetSpace": link("getSpace", "The new space.", spaceId="$response.body#/space_id"),
    "JoinSpace": link("joinSpace", "Join the new space (409 for its creator).", spaceId="$response.body#/space_id"),
    "SendMessage": link("sendMessage", "Post in the new space.", spaceId="$response.body#/space_id"),
    "ListMessages": link("listMessages", "The new space's messages.", spaceId="$response.body#/space_id"),
    "SendMessageV1": link("sendMessageV1", "Post in the new space (native).", spaceId="$response.body#/space_id"),
    "ListMessagesV1": link("listMessagesV1", "A cursor page of the new space.", spaceId="$response.body#/space_id"),
}
MESSAGE_LINKS = {
    **{name: link(op, desc, spaceId="$response.body#/space_id", messageId="$response.body#/message_id")
       for name, op, desc in [
           ("GetMessageV1", "getMessageV1", "The new message."),
           ("EditMessageV1", "editMessageV1", "Edit the new message."),
           ("RedactMessageV1", "redactMessageV1", "Redact the new message."),
           ("MessageHistoryV1", "messageHistoryV1", "The new message's history."),
           ("ThreadV1", "threadV1", "The new message's replies."),
           ("SetReactionV1", "setReactionV1", "React to the new message."),
           ("RemoveReactionV1", "removeReactionV1", "Remove a reaction from the new message."),
       ]},
    "ToggleAppreciation": link("toggleAppreciation", "Appreciate the new message.",
                               spaceId="$response.body#/space_id", messageId="$response.body#/message_id"),
    "DeleteMessage": link("deleteMessage", "Delete the new message.",
                          spaceId="$response.body#/space_id", messageId="$response.body#/message_id"),
    "ListMessages": link("listMessages", "The space the message was posted in.", spaceId="$response.body#/space_id"),
}
UPLOAD_LINKS = {
    "DownloadMedia": link("downloadMedia", "Download the upload.", mediaId="$response.body#/media_id"),
    "DownloadThumbnail": link("downloadThumbnail", "The upload's thumbnail (404 unless an image).", mediaId="$response.body#/media_id"),
}

space_param = {"$ref": "#/components/parameters/spaceId"}
message_param = {"$ref": "#/components/parameters/messageId"}

info_desc = """Spacecast is a realtime messaging engine. Users meet in **spaces** (public or private rooms with
members and power levels) and post **messages** (text and/or one image, video or audio file). It serves:

- the REST API of the Space7 mobile client (`/api/spaces…`, `/api/messages…`, `/api/media…`), wire-compatible
  with that unmodified client;
- a native realtime WebSocket stream, `GET /v1/stream` (JSON text frames, resumable with `since_seq`);
- Socket.IO (Engine.IO v4 / Socket.IO v5, websocket transport only) at `/socket.io/`, the Space7 client's realtime;
- operational endpoints: `/healthz`, `/readyz`, `/metrics` (Prometheus), `/openapi.json` (this document), and
  `GET /v1/node` (this node's status and rates, any valid token);
- a web console at `/console` (static files embedded in the binary; see the `console` tag).

Every state change of a space (message created, message deleted, appreciation toggled) gets the next `seq` of that
space: a gapless, strictly increasing per-space sequence. A send is acknowledged (HTTP 201, or a stream `ack`) only
once the message is durable in the store; fan-out happens after the write.

## Authentication
`Authorization: Bearer <JWT>` on every call except `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, the console's
files and development login (`/console…`) and `GET /api/media/{mediaId}` (the random media id in a `media_url` is the capability). The stream also accepts the
token as a `token` query parameter. Claims: the user id in `sub` or `user_id` (string or number), `username`
(defaults to the user id), `picture` or `profile_picture` (defaults to `""`), and `exp` (required; 30 s leeway).
Accepted signatures: HS256 with the server's shared secret (`--jwt-secret`, or the one generated into the data dir),
and RS256 / ES256 / EdDSA with the configured public key (`--jwt-public-key`); anything else (including `alg: none`)
is refused. `spacecast token --user-id ID --username NAME` mints a development token.

## Errors
Every response is JSON except `/metrics` (Prometheus text), the bytes of `/api/media/{mediaId}` and the
console's files (`/console…`). An error is
`{"error": "<human text>", "code": "<stable_code>"}`; the `code` values are listed in the `Error` schema
(`invalid_frame`, `not_joined`, `too_many_spaces` and `refresh_refused` occur only in stream `error` frames,
`invalid_event` only in Socket.IO `spacecast_error` events). A path no route serves gives 404
`not_found`; a wrong method on a served path gives 405 `method_not_allowed`; an unexpected failure gives
500 `internal`.

## HTTP limits
Connection-level answers, possible on every path: a request line or header that cannot be parsed gives 400
`invalid_request`, a URI over 64 KiB 414 `uri_too_long`, more than 100 headers (or a head over ~400 KiB) 431
`headers_too_large`; each closes the connection. Beyond `max_http_connections` open connections a new connection
gets 503 `overloaded` with `Retry-After` and is closed. A request head must be complete within
`http_header_timeout` (default 10 s) and a kept-alive connection with no request in flight is closed after
`http_idle_timeout` (default 60 s). A body whose `Content-Length` exceeds the route's limit is refused with 413
`payload_too_large` before it is read (an `Expect: 100-continue` client gets no `100 Continue`).

## Retry-After
Transient refusals are 503 with a `Retry-After` header (whole seconds): `overloaded` (a space's command queue is
full, or the stream's connection limit is reached), `unavailable` (the space is restarting or moving to another
node), `store_unavailable`, `bus_unavailable` (cluster mode: this node cannot reach NATS; retry, on any node),
`shutting_down`. 429 `rate_limited` with `Retry-After` refuses a send over the sender's `--send-rate-limit`
(default 60 messages a minute per user, counted per node; on the stream an `error` frame with `retry_after`), and
the console's development login beyond its node-wide budget. `GET /v1/stream` answers 429 `too_many_connections` with `Retry-After` when the user already
holds `--max-connections-per-user` realtime connections.

## 401 and the Space7 client
The Space7 client logs the user out on any HTTP 401, so 401 is returned **only** for token problems:
`unauthenticated` (no bearer token), `invalid_token` (malformed, expired, not yet valid — `nbf` or `iat` in the
future beyond the 30 s leeway —, wrongly signed, or an algorithm with no configured key) and `invalid_claims` (a
correctly signed token whose claims break their bounds; the message names the claim). Every other failure uses 400, 403, 404, 409, 413, 415, 429 or 503.
"""

socketio_desc = """Socket.IO v5 over Engine.IO v4, websocket transport only, default namespace (CONTRACT.md §4; README
"Socket.IO (Space7)"). The token goes in the Socket.IO handshake: `auth.token`, else the `token` query parameter,
else `Authorization: Bearer`. A refused handshake is a Socket.IO connect error whose message is exactly
`Authentication required` (no token), `Invalid token` or `Too many connections` (`--max-connections-per-user`).

**Client events**: `join_space` (`"<spaceId>"`, or `{space_id, since_seq}` to resume), `leave_space`
(`"<spaceId>"` or `{space_id}`), `typing` (`"<spaceId>"` or `{space_id}`). `send_message` and
`message_appreciated` (the app's relays of its own REST calls) and unknown events are ignored.

**Server events**, from the server's durable writes only, never to the sockets of the user who acted:
`receive_message` `{space_id, message}` (`message` as `POST /api/messages/{spaceId}` returns it),
`message_appreciated` `{spaceId, messageId, appreciated, userId, appreciation_count, seq}`. Deletes send nothing.
Extensions: `joined_space {space_id, head_seq}`, `left_space {space_id}`, `typing {space_id, user_id, username}`,
`spacecast_error {code, error, space_id?}`, `spacecast_disconnect {code, reason}`.
"""

stream_desc = """Upgrades to a WebSocket carrying JSON text frames (CONTRACT.md §6). Authenticate with
`Authorization: Bearer <JWT>` or, where headers cannot be set (browsers), the `token` query parameter
(`/v1/stream?token=<JWT>`); the header wins when both are present. An authentication failure still completes the
upgrade (101) and then closes the socket with code **4001** (reason `authentication required` or
`invalid or expired token`). When the node is at its connection limit (`--max-connections`) or shutting down the
upgrade is refused with 503 `overloaded` (or `shutting_down`) and `Retry-After`; when the user already holds
`--max-connections-per-user` realtime connections (default 32), with 429 `too_many_connections` and `Retry-After`.

**Session lifetime**: a session ends at its token's `exp`: the server closes it with **4001**, reason
`token_expired`, unless the client first sends `refresh` with a newer token of the same user (answered by
`refreshed`; the session then ends at the new `exp`). Reconnecting with a fresh token works too.

**Server frames** (each has a `type`; schemas `ServerFrame` and the ones it lists):
- [`Hello`](#/components/schemas/Hello) `{"type":"hello","session_id","node_id"}`: first frame of every session.
- [`Joined`](#/components/schemas/Joined) `{"type":"joined","space_id","head_seq"}`: answer to `join`.
- [`Left`](#/components/schemas/Left) `{"type":"left","space_id"}`: answer to `leave`.
- [`Event`](#/components/schemas/Event) `{"type":"event","space_id","seq","at","event","data"}` with `event` one of
  `message_created` (data: `Message`), `message_deleted` (data: `{message_id, deleted_by}`), `reaction_changed`
  (data: `{message_id, key, user_id, added, count, appreciation_count}`; Space7's appreciation is the key
  `appreciate`).
- [`Ack`](#/components/schemas/Ack) `{"type":"ack","local_id","message"}`: a `send` is durable.
- [`StreamError`](#/components/schemas/StreamError) `{"type":"error","code","error","local_id"?,"space_id"?}`: a
  refused frame; the session stays open.
- [`Typing`](#/components/schemas/Typing) `{"type":"typing","space_id","user_id","username"}`: another session is
  typing in a joined space.
- [`Refreshed`](#/components/schemas/Refreshed) `{"type":"refreshed","exp"}`: answer to `refresh`; the session now
  ends at `exp`.

**Client frames** (schema `ClientFrame`):
- [`ClientJoin`](#/components/schemas/ClientJoin) `{"type":"join","space_id","since_seq"?}` → `joined` with the
  space's current `head_seq`; with `since_seq`, then every durable event after it (replayed from the store), then
  live events, with no gap and no duplicate. A private space the caller is not a member of, or an unknown one, gives
  an `error` frame with `not_found`. A session may have joined at most `--max-spaces-per-session` spaces at once
  (default 100); a join beyond it gets `too_many_spaces` (leave one first). The replay is read from the store in
  pages of about 512 KiB and written under the same backpressure as live events.
- [`ClientLeave`](#/components/schemas/ClientLeave) `{"type":"leave","space_id"}` → `left`.
- [`ClientSend`](#/components/schemas/ClientSend) `{"type":"send","space_id","local_id"?,…}` with the fields of
  `POST /v1/spaces/{spaceId}/messages` (`content`, `body`, `msgtype`, `parent_id`, `quoted_message_id`, `mentions`,
  `metadata`, `gif`, `media_ids`, `idempotency_key`, `as_user_id`) → `ack` (once durable; a repeated idempotency key
  acks the original message) or `error`, both carrying `local_id`, with the REST codes (`empty_message`,
  `invalid_parent`, `not_a_member`, `forbidden`, `not_found`, …). At most 64 sends per session may await their ack
  (`overloaded` beyond). Over the user's `--send-rate-limit` (shared with REST sends): `rate_limited` with
  `retry_after` (seconds). `local_id` is any JSON value of at most 256 bytes, echoed back.
- [`ClientTyping`](#/components/schemas/ClientTyping) `{"type":"typing","space_id"}`: relayed to the other sessions
  watching that space on this node, never stored or sequenced; only for a joined space (else `not_joined`);
  at most one relay per second per session and space.
- [`ClientRefresh`](#/components/schemas/ClientRefresh) `{"type":"refresh","token"}` → `refreshed {exp}`. The token
  must verify like a connection's token, be for the session's user and expire later than the session's current
  token; the session then ends at its `exp` and later sends carry its `username` / `picture`. Otherwise an `error`
  frame: `invalid_token` (does not verify, or expired), `refresh_refused` (another user's, or not later); the
  session keeps its previous end.

Frames that are not valid JSON of one of these shapes, and binary frames, get an `error` frame with
`invalid_frame` (with the frame's `local_id` when it can be read). Client frames are limited to 64 KiB: a larger one
closes the session with **1009**. The server pings every `--ws-ping-interval` (default 25 s); a client whose pong does
not come back before the next ping is closed with **4002** (browsers and WebSocket libraries answer pings by
themselves while they read).

**Close codes**: **1001** going away (the server is shutting down); **1009** a client frame over 64 KiB; **4001**
authentication failed, or the token expired (reason `token_expired`: reconnect or refresh with a new token);
**4002** no pong within one ping interval (may reconnect); **4008** slow
consumer (the session fell more than `--subscriber-queue` group commits behind, or its socket accepted nothing for
15 s: reconnect and `join` with `since_seq` = the last `seq` received to resume without a gap).

On the sending session itself, the `event` of a message may arrive before its `ack`: match them by `message_id`.
"""

def uuid_str(desc=None):
    s = {"type": "string", "format": "uuid"}
    if desc: s["description"] = desc
    return s

ts = {"type": "string", "format": "date-time", "description": "RFC 3339 in UTC with milliseconds, e.g. `2025-11-22T01:57:38.123Z`."}

schemas = {
    "Error": {
        "type": "object",
        "description": "The error envelope of every failed request (extra fields may be added).",
        "required": ["error", "code"],
        "properties": {
            "error": {"type": "string", "description": "Human-readable explanation."},
            "code": {"type": "string", "enum": CODES + STREAM_ONLY,
                     "description": "Stable snake_case code. `invalid_frame`, `not_joined`, `too_many_spaces` and `refresh_refused` occur only in stream `error` frames."},
        },
        "example": {"error": "Space not found", "code": "not_found"},
    },
    "UserRef": {
        "type": "object",
        "description": "A user as their token describes them.",
        "required": ["user_id", "username", "profile_picture"],
        "properties": {
            "user_id": {"type": "string"},
            "username": {"type": "string"},
            "profile_picture": {"type": "string", "description": "URL, or `\"\"` when the token had none."},
        },
    },
    "Tag": {
        "type": "object",
        "required": ["tag_id", "tag_name"],
        "properties": {
            "tag_id": {"type": "integer", "minimum": 0, "maximum": 2147483647,
                       "description": "A stable number derived from the name (FNV-1a, below 2^31)."},
            "tag_name": {"type": "string", "description": "Lowercase, without a leading `#`."},
        },
    },
    "Member": {
        "type": "object",
        "required": ["user_id", "username", "profile_picture", "power_level", "role", "joined_at"],
        "properties": {
            "user_id": {"type": "string"},
            "username": {"type": "string"},
            "profile_picture": {"type": "string"},
            "power_level": {"type": "integer", "description": "0 member, 50 moderator, 100 admin (the creator)."},
            "role": {"$ref": "#/components/schemas/Role"},
            "joined_at": ts,
        },
    },
    "Role": {
        "type": "string",
        "enum": ["creator", "admin", "moderator", "member"],
        "description": "`creator` for the space's creator; otherwise from the power level: ≥ 100 `admin`, ≥ 50 `moderator`, else `member`.",
    },
    "Space": {
        "type": "object",
        "description": "The Space7 `Space` shape plus Spacecast's fields. `role` and `power_level` are the caller's membership, present when the caller is a member (always in `POST /api/spaces` and `GET /api/spaces/my`); `members` is present only in `GET /api/spaces/{spaceId}`.",
        "required": ["space_id", "title", "description", "visibility", "creator", "creator_id", "participant_count",
                     "tags", "posting_permission", "is_locked", "is_archived", "message_count", "head_seq",
                     "created_at", "updated_at"],
        "properties": {
            "space_id": uuid_str(),
            "title": {"type": "string"},
            "description": {"type": "string"},
            "visibility": {"type": "string", "enum": ["public", "private"]},
            "creator": ref("UserRef"),
            "creator_id": {"type": "string", "description": "Same as `creator.user_id`."},
            "participant_count": {"type": "integer", "minimum": 0, "description": "Number of members."},
            "tags": {"type": "array", "items": ref("Tag")},
            "posting_permission": {"type": "string", "enum": ["everyone", "admins"],
                                   "description": "`admins`: only members with power level ≥ 50 may post."},
            "is_locked": {"type": "boolean", "description": "Always false in this version."},
            "is_archived": {"type": "boolean", "description": "Always false in this version."},
            "message_count": {"type": "integer", "minimum": 0, "description": "Messages that exist (created and not deleted)."},
            "head_seq": {"type": "integer", "minimum": 0, "description": "The space's last `seq`; 0 when it has no events yet."},
            "created_at": ts,
            "updated_at": {"type": "string", "format": "date-time", "description": "Equal to `created_at` in this version."},
            "role": {"$ref": "#/components/schemas/Role"},
            "power_level": {"type": "integer"},
            "members": {"type": "array", "items": ref("Member"), "maxItems": 100,
                        "description": "The first 100 members, highest power level first, then earliest joined."},
        },
    },
    "CreateSpaceRequest": {
        "type": "object",
        "required": ["title"],
        "properties": {
            "title": {"type": "string", "minLength": 3, "maxLength": 200, "pattern": TITLE_PATTERN,
                      "description": "Trimmed; 3–200 characters, one line without control characters (else `invalid_title`). The pattern asks for no surrounding whitespace, which the server would trim."},
            "description": {"type": ["string", "null"], "maxLength": 5000, "pattern": TEXT_PATTERN, "description": "`null` is the default. Trimmed; at most 5000 characters, no control characters other than tab, newline and carriage return (else `invalid_description`). Defaults to `\"\"`."},
            "visibility": {"type": ["string", "null"], "enum": ["public", "private", None], "default": "public",
                           "description": "`null` is the default. Anything else gives `invalid_visibility`."},
            "hashtags": {"type": ["array", "null"], "items": {"type": "string", "pattern": HASHTAG_PATTERN}, "maxItems": 10,
                         "description": "`null` is none. At most 10; each is trimmed, a leading `#` removed, lowercased, and must then be 1–50 characters without whitespace (else `invalid_hashtags`). Duplicates are dropped."},
            "posting_permission": {"type": ["string", "null"], "enum": ["everyone", "admins", None], "default": "everyone",
                                   "description": "`null` is the default. Anything else gives `invalid_request`."},
        },
    },
    "JoinRequest": {
        "type": "object",
        "properties": {"invite_code": {"type": "string",
                                       "description": "Accepted but not yet usable: joining a private space the caller is not a member of gives 404 `not_found`, exactly as an unknown space does."}},
    },
    "JoinResult": {
        "type": "object",
        "required": ["message", "space_id", "power_level"],
        "properties": {
            "message": {"type": "string", "const": "Joined space"},
            "space_id": uuid_str(),
            "power_level": {"type": "integer", "description": "The new member's power level (0)."},
        },
    },
    "Like": {
        "type": "object",
        "required": ["id", "user_id"],
        "properties": {
            "id": {"type": "integer", "minimum": 1, "description": "The `seq` of the event that added this appreciation: a number unique within the space."},
            "user_id": {"type": "string"},
        },
    },
    "Message": {
        "type": "object",
        "description": "A message in the Space7 shape plus `seq`.",
        "required": ["message_id", "space_id", "seq", "sender_id", "content", "media_url", "media_type", "word_count",
                     "sender", "likes", "appreciation_count", "created_at"],
        "properties": {
            "message_id": uuid_str("UUIDv7."),
            "space_id": uuid_str(),
            "seq": {"type": "integer", "minimum": 1, "description": "The `seq` of the event that created it; also its position in recency order."},
            "sender_id": {"type": "string"},
            "content": {"type": ["string", "null"], "description": "Trimmed text; `null` for a media-only message."},
            "media_url": {"type": ["string", "null"], "format": "uri-reference",
                          "description": "URL of the attached file, or `null`: absolute (`<public_url>/api/media/<mediaId>`) when the server has `--public-url`, else relative (`/api/media/<mediaId>`). Never built from request headers. The Space7 app's image view needs an absolute URL, so set `--public-url` for it."},
            "media_type": {"type": ["string", "null"], "enum": ["image", "video", "audio", None]},
            "word_count": {"type": "integer", "minimum": 0, "description": "Whitespace-separated words of `content`; 0 without content."},
            "sender": ref("UserRef"),
            "likes": {"type": "array", "items": ref("Like")},
            "appreciation_count": {"type": "integer", "minimum": 0, "description": "Equal to the length of `likes`."},
            "created_at": ts,
        },
    },
    "MessagesPage": {
        "type": "object",
        "required": ["messages", "total", "page", "limit", "totalPages"],
        "properties": {
            "messages": {"type": "array", "items": ref("Message")},
            "total": {"type": "integer", "minimum": 0, "description": "Messages in the space."},
            "page": {"type": "integer", "minimum": 1},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            "totalPages": {"type": "integer", "minimum": 0, "description": "`ceil(total / limit)`."},
        },
    },
    "SendMessageForm": {
        "type": "object",
        "anyOf": [{"required": ["content"]}, {"required": ["media"]}],
        "dependentRequired": {"media": ["media_type"]},
        "description": "The Space7 client's multipart body. Other field names give 400 `invalid_request`.",
        "properties": {
            "content": {"type": "string", "maxLength": 5000, "pattern": CONTENT_PATTERN, "description": "Trimmed; optional when `media` is given. No control characters other than tab, newline and carriage return (`invalid_content`). At most `max_content_chars` (default 5000) characters (`content_too_long`); a field over 64 KiB gives 413."},
            "media": {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream",
                      "description": "One file, at most `max_media_bytes` (default 10 MiB, else 413). Its bytes must be a recognised format of `media_type`'s kind (checked by signature, not by the part's Content-Type), else `invalid_media_type`. An empty part counts as no media."},
            "media_type": {"type": "string", "enum": ["image", "video", "audio"],
                           "description": "Required with `media` (else `invalid_media_type`); ignored without it."},
        },
    },
    "SendMessageJson": {
        "type": "object",
        "required": ["content"],
        "description": "Text only: a JSON body cannot carry media (a `media_type` field is ignored, as are unknown fields).",
        "properties": {
            "content": {"type": "string", "minLength": 1, "maxLength": 5000, "pattern": CONTENT_PATTERN, "description": "Trimmed; required non-empty (`empty_message`); no control characters other than tab, newline and carriage return (`invalid_content`); at most `max_content_chars` characters (`content_too_long`)."},
        },
    },
    "Appreciation": {
        "type": "object",
        "required": ["appreciated", "appreciation_count", "message_id", "space_id"],
        "properties": {
            "appreciated": {"type": "boolean", "description": "Whether the caller appreciates the message after this toggle."},
            "appreciation_count": {"type": "integer", "minimum": 0},
            "message_id": uuid_str(),
            "space_id": uuid_str(),
        },
    },
    "DeleteResult": {
        "type": "object",
        "required": ["message", "message_id"],
        "properties": {
            "message": {"type": "string", "const": "Message deleted"},
            "message_id": uuid_str(),
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "const": "ok"}},
    },
    "Ready": {
        "type": "object",
        "required": ["status", "store", "media", "bus", "node_id"],
        "properties": {
            "status": {"type": "string", "const": "ready"},
            "store": {"type": "string", "const": "ok"},
            "media": {"type": "string", "enum": ["ok", "unavailable"],
                      "description": "The media store's answer to a cheap check (S3: one HEAD, at most 0.8 s). Reported only: every node shares the media store, so its outage does not make a node unready."},
            "bus": {"type": "string", "const": "in-process"},
            "node_id": {"type": "string"},
        },
    },
    # ---- stream frames ----
    "Hello": {
        "type": "object", "description": "First server frame of every stream session.",
        "required": ["type", "session_id", "node_id"],
        "properties": {
            "type": {"type": "string", "const": "hello"},
            "session_id": {"type": "string", "description": "`<node_id>-<number>`, unique per session."},
            "node_id": {"type": "string"},
        },
    },
    "Joined": {
        "type": "object", "description": "Answer to `join`. Sent before any replayed events.",
        "required": ["type", "space_id", "head_seq"],
        "properties": {
            "type": {"type": "string", "const": "joined"},
            "space_id": {"type": "string", "description": "The `space_id` exactly as the client sent it."},
            "head_seq": {"type": "integer", "minimum": 0, "description": "The space's last durable `seq` when the join happened."},
        },
    },
    "Left": {
        "type": "object", "description": "Answer to `leave`.",
        "required": ["type", "space_id"],
        "properties": {
            "type": {"type": "string", "const": "left"},
            "space_id": {"type": "string", "description": "The `space_id` exactly as the client sent it."},
        },
    },
    "MessageDeletedData": {
        "type": "object", "required": ["message_id", "deleted_by"],
        "properties": {
            "message_id": uuid_str(),
            "deleted_by": {"type": "string", "description": "User id of the author or moderator who deleted it."},
        },
    },
    "ReactionChangedData": {
        "type": "object",
        "required": ["message_id", "key", "user_id", "added", "count", "appreciation_count"],
        "properties": {
            "message_id": uuid_str(),
            "key": {"type": "string", "description": "The reaction key; Space7's appreciation is `appreciate`."},
            "user_id": {"type": "string"},
            "added": {"type": "boolean", "description": "True when the reaction was added, false when removed."},
            "count": {"type": "integer", "minimum": 0, "description": "The key's count after the change."},
            "appreciation_count": {"type": "integer", "minimum": 0, "description": "The message's appreciation count after the change."},
        },
    },
    "Event": {
        "type": "object",
        "description": "One durable state change of a joined space, in `seq` order. `data` is a `Message` for `message_created`, `MessageDeletedData` for `message_deleted`, `ReactionChangedData` for `reaction_changed`.",
        "required": ["type", "space_id", "seq", "at", "event", "data"],
        "properties": {
            "type": {"type": "string", "const": "event"},
            "space_id": uuid_str(),
            "seq": {"type": "integer", "minimum": 1},
            "at": ts,
            "event": {"type": "string", "enum": ["message_created", "message_deleted", "reaction_changed"]},
            "data": {"oneOf": [ref("Message"), ref("MessageDeletedData"), ref("ReactionChangedData")]},
        },
    },
    "Ack": {
        "type": "object", "description": "A `send` was made durable.",
        "required": ["type", "local_id", "message"],
        "properties": {
            "type": {"type": "string", "const": "ack"},
            "local_id": {"description": "The send's `local_id` (any JSON value), or `null` when it had none."},
            "message": ref("Message"),
        },
    },
    "StreamError": {
        "type": "object", "description": "A refused client frame. The session stays open.",
        "required": ["type", "code", "error"],
        "properties": {
            "type": {"type": "string", "const": "error"},
            "code": {"$ref": "#/components/schemas/Error/properties/code"},
            "error": {"type": "string"},
            "local_id": {"description": "The refused frame's `local_id`, when it had one that could be read."},
            "space_id": {"type": "string", "description": "The refused command's `space_id` as sent, when there was one."},
        },
    },
    "Typing": {
        "type": "object", "description": "A user is typing in a joined space (never sent back to the session that typed).",
        "required": ["type", "space_id", "user_id", "username"],
        "properties": {
            "type": {"type": "string", "const": "typing"},
            "space_id": uuid_str(),
            "user_id": {"type": "string"},
            "username": {"type": "string"},
        },
    },
    "Refreshed": {
        "type": "object", "description": "Answer to `refresh`: the session now ends at `exp`.",
        "required": ["type", "exp"],
        "properties": {
            "type": {"type": "string", "const": "refreshed"},
            "exp": {"type": "integer", "minimum": 0, "description": "The new token's `exp` (seconds since the Unix epoch)."},
        },
    },
    "ServerFrame": {
        "description": "Any frame the server sends on `/v1/stream`.",
        "oneOf": [ref(n) for n in ["Hello", "Joined", "Left", "Event", "Ack", "StreamError", "Typing", "Refreshed"]],
        "discriminator": {"propertyName": "type", "mapping": {
            "hello": "#/components/schemas/Hello", "joined": "#/components/schemas/Joined",
            "left": "#/components/schemas/Left", "event": "#/components/schemas/Event",
            "ack": "#/components/schemas/Ack", "error": "#/components/schemas/StreamError",
            "typing": "#/components/schemas/Typing", "refreshed": "#/components/schemas/Refreshed"}},
    },
    "ClientJoin": {
        "type": "object", "required": ["type", "space_id"],
        "properties": {
            "type": {"type": "string", "const": "join"},
            "space_id": {"type": "string"},
            "since_seq": {"type": "integer", "minimum": 0, "description": "Replay every durable event after this `seq` before live ones."},
        },
    },
    "ClientLeave": {
        "type": "object", "required": ["type", "space_id"],
        "properties": {"type": {"type": "string", "const": "leave"}, "space_id": {"type": "string"}},
    },
    "ClientSend": {
        "type": "object", "required": ["type", "space_id"],
        "properties": {
            "type": {"type": "string", "const": "send"},
            "space_id": {"type": "string"},
            "content": {"type": "string", "description": "Trimmed; must be non-empty."},
            "local_id": {"description": "Any JSON value of at most 256 bytes (serialized), echoed in `ack` / `error`; not stored."},
        },
    },
    "ClientTyping": {
        "type": "object", "required": ["type", "space_id"],
        "properties": {"type": {"type": "string", "const": "typing"}, "space_id": {"type": "string"}},
    },
    "ClientRefresh": {
        "type": "object", "required": ["type", "token"],
        "properties": {
            "type": {"type": "string", "const": "refresh"},
            "token": {"type": "string", "description": "A newer JWT of the same user; the session then ends at its `exp`."},
        },
    },
    "ClientFrame": {
        "description": "Any frame a client may send on `/v1/stream`.",
        "oneOf": [ref(n) for n in ["ClientJoin", "ClientLeave", "ClientSend", "ClientTyping", "ClientRefresh"]],
        "discriminator": {"propertyName": "type", "mapping": {
            "join": "#/components/schemas/ClientJoin", "leave": "#/components/schemas/ClientLeave",
            "send": "#/components/schemas/ClientSend", "typing": "#/components/schemas/ClientTyping",
            "refresh": "#/components/schemas/ClientRefresh"}},
    },
}

responses = {
    "Unauthorized": err("Missing, malformed, expired, not yet valid or wrongly signed token, or claims outside their bounds (the only 401s).",
                        ["unauthenticated", "invalid_token", "invalid_claims"]),
    "InternalError": err("Unexpected failure; details are only logged.", ["internal"]),
    "UriTooLong": err("The request URI is too long (the connection is closed).", ["uri_too_long"]),
    "HeadersTooLarge": err("Too many or too large request headers (the connection is closed).", ["headers_too_large"]),
    "ConnectionCap": err("The node is at its HTTP connection limit (`max_http_connections`); the connection is closed.",
                         ["overloaded"], {"overloaded": "Too many HTTP connections; retry shortly"}, retry=True),
}

parameters = {
    "spaceId": {"name": "spaceId", "in": "path", "required": True,
                "description": "The space's id (a UUID). A value that is not a UUID gives 404 `not_found`.",
                "schema": {"type": "string", "format": "uuid"}},
    "messageId": {"name": "messageId", "in": "path", "required": True,
                  "description": "The message's id (a UUID). A value that is not a UUID gives 404 `not_found`.",
                  "schema": {"type": "string", "format": "uuid"}},
}

headers = {
    "Retry-After": {"description": "Seconds to wait before retrying (at least 1).",
                    "schema": {"type": "integer", "minimum": 1}},
}

R401 = rr("Unauthorized")
R500 = rr("InternalError")
def r404(what="Unknown space, or a private space the caller is not a member of."):
    return err(what, ["not_found"])
def r413(msg=None):
    return err("The request body is larger than `max_body_bytes` (default 256 KiB).", ["payload_too_large"])
def r503(codes, desc="Transient refusal; retry after `Retry-After` seconds."):
    return err(desc, codes, retry=True)

no_sec = []

paths = {
    "/healthz": {"get": {
        "operationId": "healthz", "summary": "Liveness: the process is up", "tags": ["operations"],
        "security": no_sec,
        "responses": {"200": json_ok("The process is up.", ref("Health"))},
    }},
    "/readyz": {"get": {
        "operationId": "readyz", "summary": "Readiness: the store answers and the node accepts work", "tags": ["operations"],
        "security": no_sec,
        "description": "200 when the store answers a ping and the node is not shutting down. `bus` is reported as `in-process`; `media` reports the media store without affecting the status.",
        "responses": {
            "200": json_ok("Ready.", ref("Ready")),
            "503": r503(["shutting_down", "store_unavailable", "bus_unavailable"], "Not ready: shutting down, or the store or (cluster mode) NATS is unreachable."),
        },
    }},
    "/metrics": {"get": {
        "operationId": "metrics", "summary": "Prometheus metrics", "tags": ["operations"],
        "security": no_sec,
        "responses": {"200": {
            "description": "Prometheus text exposition format (`Content-Type: text/plain; version=0.0.4; charset=utf-8`).",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }},
    }},
    "/openapi.json": {"get": {
        "operationId": "openapi", "summary": "This OpenAPI document", "tags": ["operations"],
        "security": no_sec,
        "responses": {"200": json_ok("The OpenAPI 3.1 document.", {"type": "object"})},
    }},
    "/api/spaces": {"post": {
        "operationId": "createSpace", "summary": "Create a space", "tags": ["spaces"],
        "description": "Creates a space; the caller becomes its creator with power level 100 (`role` `creator`). Durable when answered.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref("CreateSpaceRequest")}},
                        "description": "JSON (the Content-Type header is not checked). An empty body is `{}` and fails `invalid_title`."},
        "responses": {
            "201": json_ok("The new space, with the caller's `role` and `power_level`.", ref("Space"), SPACE_LINKS),
            "400": err("Invalid body.", ["invalid_json", "invalid_title", "invalid_description", "invalid_visibility",
                                          "invalid_hashtags", "invalid_request"]),
            "401": R401,
            "413": r413(),
            "500": R500,
            "503": r503(["store_unavailable"]),
        },
    }},
    "/api/spaces/my": {"get": {
        "operationId": "listMySpaces", "summary": "List the spaces the caller belongs to", "tags": ["spaces"],
        "description": "Every space the caller created or joined, newest space first, each with the caller's `role` and `power_level`. Query parameters are ignored.",
        "responses": {
            "200": json_ok("The caller's spaces.", {"type": "array", "items": ref("Space")}),
            "401": R401,
            "500": R500,
            "503": r503(["store_unavailable"]),
        },
    }},
    "/api/spaces/{spaceId}": {"get": {
        "operationId": "getSpace", "summary": "Get a space with its members", "tags": ["spaces"],
        "parameters": [space_param],
        "description": "A public space, or a private one the caller is a member of, with `members` (the first 100). `role` and `power_level` are present when the caller is a member.",
        "responses": {
            "200": json_ok("The space.", ref("Space")),
            "401": R401,
            "404": r404(),
            "500": R500,
            "503": r503(["store_unavailable"]),
        },
    }},
    "/api/spaces/{spaceId}/join": {"post": {
        "operationId": "joinSpace", "summary": "Join a space", "tags": ["spaces"],
        "parameters": [space_param],
        "description": "Joins a public space as an ordinary member (power level 0). The Space7 client calls this before every send and ignores exactly the 409 `Already a member` error. A private space cannot be joined in this version: to a non-member it answers 404 `not_found` with the same body as an unknown space, so join reveals nothing about which private spaces exist.",
        "requestBody": {"required": False, "content": {"application/json": {"schema": ref("JoinRequest")}},
                        "description": "Optional JSON; an empty body is `{}`."},
        "responses": {
            "200": json_ok("Joined.", ref("JoinResult")),
            "400": err("Invalid body.", ["invalid_json", "invalid_request"]),
            "401": R401,
            "404": err("Unknown space, or a private space the caller is not a member of (the same answer).", ["not_found"]),
            "409": err("The caller already is a member (`{\"error\":\"Already a member\",\"code\":\"already_member\"}`).", ["already_member"]),
            "413": r413(),
            "500": R500,
            "503": r503(ENGINE_503),
        },
    }},
    "/api/messages/{spaceId}": {
        "get": {
            "operationId": "listMessages", "summary": "List a space's messages, page by page", "tags": ["messages"],
            "parameters": [space_param,
                {"name": "sort", "in": "query", "required": False,
                 "description": "`recent`: newest first. `most_appreciated`: highest `appreciation_count` first, ties newest first. Empty means `recent`; anything else gives `invalid_sort`.",
                 "schema": {"type": "string", "enum": ["recent", "most_appreciated", ""], "default": "recent"}},
                {"name": "page", "in": "query", "required": False,
                 "description": "1-based page number, at most 1000000 (else `invalid_pagination`).",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000000, "default": 1}},
                {"name": "limit", "in": "query", "required": False,
                 "description": "Messages per page, 1–100 (else `invalid_pagination`).",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
            ],
            "description": "Readable by any authenticated user for a public space, and by members for a private one.",
            "responses": {
                "200": json_ok("One page of messages.", ref("MessagesPage")),
                "400": err("Invalid query parameter.", ["invalid_sort", "invalid_pagination"],
                           {"invalid_pagination": "page must be a positive integer"}),
                "401": R401,
                "404": r404(),
                "500": R500,
                "503": r503(["store_unavailable"]),
            },
        },
        "post": {
            "operationId": "sendMessage", "summary": "Send a message", "tags": ["messages"],
            "parameters": [space_param],
            "description": "Posts a message (text and/or one media file) as the caller, who must be a member (and, in a space with `posting_permission` `admins`, have power level ≥ 50). Answered 201 only once the message is durable. A body without Content-Type is read as JSON; any Content-Type other than `multipart/form-data` or one containing `json` gives 415.",
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": ref("SendMessageForm"),
                                         "encoding": {"media": {"contentType": "image/*, video/*, audio/*, application/octet-stream"}}},
                "application/json": {"schema": ref("SendMessageJson")},
            }},
            "responses": {
                "201": json_ok("The message as stored (`likes` empty, `appreciation_count` 0).", ref("Message"), MESSAGE_LINKS),
                "400": err("Invalid message.", ["empty_message", "invalid_media_type", "content_too_long", "invalid_content", "invalid_json", "invalid_request"]),
                "401": R401,
                "403": err("The caller is not a member, or may not post in this space.", ["not_a_member", "forbidden"],
                           {"forbidden": "Only admins and moderators may post in this space"}),
                "404": r404(),
                "413": err("The media part exceeds `max_media_bytes` (default 10 MiB), another part or the JSON body is too large.",
                           ["payload_too_large"], {"payload_too_large": "media exceeds 10485760 bytes"}),
                "415": err("The body is neither multipart/form-data nor JSON.", ["unsupported_media_type"]),
                "429": err("The sender is over `--send-rate-limit` (default 60 messages a minute: a burst of 60, then one a second), checked before the body is read; retry after `Retry-After` seconds.",
                           ["rate_limited"], {"rate_limited": "Too many messages; retry in 1 s"}, retry=True),
                "500": R500,
                "503": r503(ENGINE_503),
            },
        },
    },
    "/api/messages/{spaceId}/{messageId}/appreciate": {"post": {
        "operationId": "toggleAppreciation", "summary": "Toggle the caller's appreciation of a message", "tags": ["messages"],
        "parameters": [space_param, message_param],
        "description": "Adds the caller's appreciation if absent, removes it if present. Anyone who can read the space may appreciate (membership is needed only in a private space). No request body.",
        "responses": {
            "200": json_ok("The outcome of the toggle.", ref("Appreciation")),
            "401": R401,
            "403": err("Private space and the caller is not a member.", ["not_a_member"]),
            "404": err("Unknown space or message, or a private space the caller is not a member of.", ["not_found"],
                       {"not_found": "Message not found"}),
            "500": R500,
            "503": r503(ENGINE_503),
        },
    }},
    "/api/messages/{spaceId}/{messageId}": {"delete": {
        "operationId": "deleteMessage", "summary": "Delete a message", "tags": ["messages"],
        "parameters": [space_param, message_param],
        "description": "Hard-deletes a message, and its media file (its `media_url` then answers 404). Allowed for its author and for members with power level ≥ 50 (moderators, admins).",
        "responses": {
            "200": json_ok("Deleted.", ref("DeleteResult")),
            "401": R401,
            "403": err("The caller is neither the author nor a moderator.", ["forbidden"]),
            "404": err("Unknown space or message, or a private space the caller is not a member of.", ["not_found"],
                       {"not_found": "Message not found"}),
            "500": R500,
            "503": r503(ENGINE_503),
        },
    }},
    "/api/media/{mediaId}": {"get": {
        "operationId": "getMedia", "summary": "Download a message's media file", "tags": ["media"],
        "security": no_sec,
        "description": "No authentication: the unguessable id in a message's `media_url` is the capability. The Content-Type is the one the file's bytes identify. A file lives as long as its message: deleting the message deletes it, and files whose send failed are swept. Any node sharing the media store (`--media-store s3`) serves any upload.",
        "parameters": [{"name": "mediaId", "in": "path", "required": True,
                        "description": "The id from `media_url` (a UUID, written without hyphens in `media_url`; the hyphenated form is accepted too).",
                        "schema": {"type": "string"}}],
        "responses": {
            "200": {
                "description": "The file's bytes.",
                "headers": {
                    "Cache-Control": {"description": "`public, max-age=3600`: the bytes never change, but the file is deleted with its message, so caches keep it at most an hour after that.", "schema": {"type": "string"}},
                    "X-Content-Type-Options": {"description": "`nosniff`.", "schema": {"type": "string"}},
                },
                "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "video/*": {"schema": {"type": "string", "format": "binary"}},
                    "audio/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "404": err("No such media.", ["not_found"], {"not_found": "Media not found"}),
            "503": r503(["store_unavailable"], "The media store failed or could not be reached."),
        },
    }},
    "/v1/stream": {"get": {
        "operationId": "openStream", "summary": "Native realtime stream (WebSocket)", "tags": ["realtime"],
        "description": stream_desc,
        "security": [{"bearerAuth": []}, {"tokenQuery": []}],
        "responses": {
            "101": {"description": "Switching to the WebSocket protocol. The first frame is `hello` (or, when authentication failed, a close with code 4001)."},
            "400": err("Not a WebSocket upgrade request.", ["invalid_request"]),
            "429": err("The user already holds `--max-connections-per-user` realtime connections (default 32); retry after `Retry-After` seconds or close one.",
                       ["too_many_connections"], retry=True),
            "503": r503(["overloaded", "shutting_down"], "The node is at its connection limit or shutting down."),
        },
    }},
    "/socket.io/": {"get": {
        "operationId": "openSocketIo", "summary": "Socket.IO for the Space7 client (WebSocket)", "tags": ["realtime"],
        "description": socketio_desc,
        "security": no_sec,
        "parameters": [
            {"name": "EIO", "in": "query", "required": True, "description": "Engine.IO protocol version: `4`.", "schema": {"type": "string", "enum": ["4"]}},
            {"name": "transport", "in": "query", "required": True, "description": "`websocket` (long-polling is not served).", "schema": {"type": "string", "enum": ["websocket"]}},
        ],
        "responses": {
            "101": {"description": "Switching to the WebSocket protocol; Engine.IO and Socket.IO follow (the token is checked in the Socket.IO handshake)."},
            "400": err("Not an Engine.IO 4 websocket upgrade: `transport_unsupported` for HTTP long-polling or any other transport, `unsupported_protocol` for another `EIO`, `invalid_request` for a request that is not a WebSocket upgrade.",
                       ["transport_unsupported", "unsupported_protocol", "invalid_request"]),
            "405": err("Only `GET`.", ["method_not_allowed"]),
            "503": r503(["overloaded", "shutting_down"], "The node is at its connection limit (`--max-connections`) or shutting down."),
        },
    }},
}

# ---- Native media (api/src/routes/media.rs, api/src/media/) ----
schemas["Uploaded"] = {
    "type": "object",
    "description": "A stored `/v1` upload, as `POST /v1/media` returns it and a message's `media` lists it.",
    "required": ["media_id", "sha256", "size", "content_type", "thumbnail_id"],
    "properties": {
        "media_id": {"type": "string", "format": "uuid", "description": "Random (unguessable) id."},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "Lower-case hex SHA-256 of the bytes; the download's strong ETag."},
        "size": {"type": "integer", "minimum": 1, "description": "Bytes; at most `--max-media-bytes` (default 10 MiB)."},
        "content_type": {"type": "string", "enum": ["image/png", "image/jpeg", "image/gif", "image/webp", "video/mp4", "video/webm", "video/quicktime", "audio/mpeg", "audio/ogg", "audio/wav", "audio/flac", "audio/aac", "audio/mp4", "application/pdf", "text/plain"],
                         "description": "The canonical type the bytes are (detected from their signature, checked against the declared type)."},
        "thumbnail_id": {"type": ["string", "null"], "format": "uuid", "description": "Images only: the media id of a JPEG thumbnail within 320×320 (aspect kept); `null` otherwise."},
    },
}
v1_media_param = {"name": "mediaId", "in": "path", "required": True, "description": "A media id from `POST /v1/media` (hyphenated or not).", "schema": {"type": "string"}}
v1_download_headers = {
    "Content-Type": {"description": "The stored type (`text/plain; charset=utf-8` for text).", "schema": {"type": "string"}},
    "Content-Disposition": {"description": "`inline` for image, video and audio; `attachment; filename=\"<id>.<ext>\"` for anything else.", "schema": {"type": "string"}},
    "Content-Length": {"description": "The size.", "schema": {"type": "integer"}},
    "ETag": {"description": "Strong: the quoted sha256. A matching `If-None-Match` gets 304.", "schema": {"type": "string"}},
    "Cache-Control": {"description": "`private, max-age=3600, immutable`: the bytes of an id never change, but a redaction deletes them.", "schema": {"type": "string"}},
    "X-Content-Type-Options": {"description": "`nosniff`.", "schema": {"type": "string"}},
}
def v1_download(op, summary, what):
    return {"get": {
        "operationId": op, "summary": summary, "tags": ["media"],
        "description": what + " Any authenticated user who has the id may read it (ids are random UUIDs). No range requests: the whole file is sent.",
        "parameters": [v1_media_param, {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "The bytes.", "headers": v1_download_headers,
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
            "304": {"description": "`If-None-Match` matched the ETag.", "headers": v1_download_headers},
            "401": R401,
            "404": err("No such upload (or one of the Space7 send path, served at `/api/media/{mediaId}`), or no thumbnail.", ["not_found"], {"not_found": "Media not found"}),
            "503": r503(["store_unavailable"], "The media store failed or could not be reached."),
        },
    }}
paths["/v1/media"] = {"post": {
    "operationId": "uploadMedia", "summary": "Upload a file for a later message", "tags": ["media"],
    "description": "The body is `multipart/form-data` with exactly one part named `file` (its Content-Type is the declared type), or the raw bytes with the declared type as the request's Content-Type. "
                   "The type is detected from the bytes; accepted: images png, jpeg, gif, webp; video mp4, webm, quicktime; audio mpeg, ogg, wav, flac, aac, mp4; `application/pdf`; `text/plain` for valid UTF-8 in which nothing else is detected. "
                   "Declared types are compared without parameters and case, with aliases (`image/jpg` is `image/jpeg`, `audio/mp3` is `audio/mpeg`, …); no declared type or `application/octet-stream` means: use the detected one. "
                   "Images get a JPEG thumbnail within 320×320, made off the request runtime with bounded decoding (at most 16384 px a side and 128 MiB of pixels). "
                   "An upload no message uses within 24 h is deleted; a send attaches it (`media_ids`).",
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "*/*": {"schema": {"type": "string", "format": "binary"}},
    }},
    "responses": {
        "201": json_ok("Stored (bytes, record and thumbnail durable).", ref("Uploaded"), UPLOAD_LINKS),
        "400": err("Refused upload.", ["expected_one_file", "empty_media", "media_type_mismatch", "invalid_image", "invalid_request"]),
        "401": R401,
        "413": err("The file is larger than `--max-media-bytes` (refused while it streams in; nothing is stored).", ["payload_too_large"], {"payload_too_large": "The file exceeds 10485760 bytes"}),
        "415": err("The bytes are not an accepted type.", ["unsupported_media_type"], {"unsupported_media_type": "The file is not an accepted type"}),
        "503": r503(["overloaded", "store_unavailable"], "The thumbnail pool is full (`overloaded`), or the media store failed."),
    },
}}
paths["/v1/media/{mediaId}"] = v1_download("downloadMedia", "Download an upload", "The bytes of an upload.")
paths["/v1/media/{mediaId}/thumbnail"] = v1_download("downloadThumbnail", "Download an upload's thumbnail", "The JPEG thumbnail of an image upload (404 for other uploads).")

# ---- Native messages (api/src/routes/v1_messages.rs) ----
MSG.update({
    "invalid_cursor": "cursor is not one this server made",
    "invalid_filter": "has_attachment must be true or false",
})
schemas["MessageV1"] = {
    "type": "object", "additionalProperties": True,
    "description": "A message as the native surface shows it: the Space7 fields but `likes` (a list that grows with the appreciations; `reaction_counts` has its count), plus the native ones.",
    "required": ["message_id", "space_id", "seq", "sender_id", "actor_id", "msgtype", "content", "reaction_counts",
                 "appreciation_count", "user_reactions", "reply_count", "redacted", "created_at"],
    "properties": {
        "message_id": uuid_str("UUIDv7."),
        "space_id": uuid_str(),
        "seq": {"type": "integer", "minimum": 1},
        "sender_id": {"type": "string"},
        "actor_id": {"type": "string", "description": "`sender_id`, or the admin who sent it on the sender's behalf."},
        "msgtype": {"type": "string"},
        "content": {"type": ["string", "null"]},
        "reaction_counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1},
                            "description": "Reaction key → count (keys with no reaction are absent); `appreciate` is Space7's appreciation."},
        "appreciation_count": {"type": "integer", "minimum": 0, "description": "`reaction_counts.appreciate`, or 0."},
        "user_reactions": {"type": "array", "items": {"type": "string"}, "description": "The keys the caller reacted with."},
        "reply_count": {"type": "integer", "minimum": 0},
        "redacted": {"type": "boolean"},
        "created_at": ts,
    },
}
schemas["MessageCursorPage"] = {
    "type": "object", "required": ["data", "next_cursor"],
    "properties": {
        "data": {"type": "array", "items": ref("MessageV1"), "maxItems": 100},
        "next_cursor": {"type": ["string", "null"], "description": "Continues this page (same direction); `null`: nothing more now."},
    },
}
paths["/v1/spaces/{spaceId}/messages"] = {"get": {
    "operationId": "listMessagesV1", "summary": "A cursor page of messages, with filters", "tags": ["v1"],
    "parameters": [space_param,
        {"name": "cursor", "in": "query", "required": False, "description": "`next_cursor` of the previous page (opaque; it carries its direction, so `direction` is ignored with it).", "schema": {"type": "string", "pattern": CURSOR_PATTERN}},
        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
        {"name": "direction", "in": "query", "required": False, "description": "`backward`: newest first; `forward`: oldest first. Ignored with a cursor (which continues its own direction).", "schema": {"type": "string", "enum": ["backward", "forward"], "default": "backward"}},
        {"name": "sender_id", "in": "query", "required": False, "schema": {"type": "string", "minLength": 1, "maxLength": 256}},
        {"name": "has_attachment", "in": "query", "required": False, "schema": {"type": "boolean"}},
        {"name": "since", "in": "query", "required": False, "description": "Created at or after (RFC 3339).", "schema": {"type": "string", "format": "date-time"}},
        {"name": "until", "in": "query", "required": False, "description": "Created at or before (RFC 3339).", "schema": {"type": "string", "format": "date-time"}},
    ],
    "description": "Keyset pages: across pages every message appears exactly once, even while new ones arrive. Filters are applied while scanning the space in seq order, at most 1000 messages per request: a page may then hold fewer than `limit` matches (even none) with a `next_cursor` to continue. `since` (forward) and `until` (backward) start the scan by binary search.",
    "responses": {
        "200": json_ok("One page.", ref("MessageCursorPage")),
        "400": err("Invalid query parameter.", ["invalid_pagination", "invalid_cursor", "invalid_filter"]),
        "401": R401,
        "404": r404(),
        "500": R500,
        "503": r503(["store_unavailable"]),
    },
}}
MSG.update({
    "invalid_parent": "parent_id must name a message of this space that is not itself a reply",
    "invalid_quote": "quoted_message_id must name a message of this space",
    "invalid_as_user": "as_user_id must name a member of this space",
    "invalid_msgtype": "msgtype must be text, code, media, system or a namespaced name such as x.poll",
    "invalid_mentions": "at most 50 mentions, each a user id of 1 to 128 bytes",
    "invalid_gif": "gif needs an http(s) url of at most 2048 bytes, width and height",
    "invalid_reason": "reason is longer than 128 characters",
    "invalid_idempotency_key": "an idempotency key is 1 to 128 printable ASCII characters",
    "edit_window_closed": "The edit window of this message has closed",
    "message_redacted": "This message was redacted",
    "idempotency_key_reused": "The message this idempotency key created was deleted",
})
obj = {"type": ["object", "null"], "additionalProperties": True}
# `null` means absent for every optional field. "Has content" is a non-blank `content`.
has_content = {"required": ["content"], "properties": {"content": {"type": "string", "pattern": CONTENT_PATTERN}}}
has_body = {"required": ["body"], "properties": {"body": {"type": "object"}}}
v1_content = {"type": ["string", "null"], "maxLength": 5000, "pattern": TEXT_PATTERN,
              "description": "Trimmed (blank is no content); no control characters other than tab, newline and carriage return (`invalid_content`); at most `max_content_chars` characters (`content_too_long`)."}
schemas["SendMessageV1"] = {
    "type": "object",
    "description": "One of a non-blank `content`, `body`, `gif` or `media_ids` is required (`empty_message`). `null` is the same as absent. Unknown fields are ignored.",
    "anyOf": [has_content, has_body, {"required": ["gif"], "properties": {"gif": {"type": "object"}}},
              {"required": ["media_ids"], "properties": {"media_ids": {"type": "array", "minItems": 1}}}],
    "properties": {
        "content": v1_content,
        "body": dict(obj, description="Free-form JSON object, at most 64 KB serialized (413 above)."),
        "msgtype": {"type": ["string", "null"], "maxLength": 64, "pattern": MSGTYPE_PATTERN, "default": "text", "description": "`text`, `code`, `media`, `system`, or a namespaced lowercase name (`x.poll`)."},
        "parent_id": {"type": ["string", "null"], "format": "uuid", "description": "A message of this space that is not itself a reply (else `invalid_parent`)."},
        "quoted_message_id": {"type": ["string", "null"], "format": "uuid", "description": "A message of this space (else `invalid_quote`)."},
        "mentions": {"type": "array", "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^\\S+$", "description": "A user id: no whitespace, at most 128 characters."}},
        "metadata": dict(obj, description="JSON object, at most 10 KB serialized (413 above)."),
        "gif": {"type": ["object", "null"], "required": ["url", "width", "height"], "properties": {
            "url": {"type": "string", "pattern": "^https?://", "maxLength": 512}, "width": {"type": "integer", "minimum": 1, "maximum": 4294967295},
            "height": {"type": "integer", "minimum": 1, "maximum": 4294967295}, "title": {"type": ["string", "null"], "maxLength": 128}}},
        "media_ids": {"type": "array", "maxItems": 10, "items": uuid_str("An upload of the caller (`POST /v1/media`) not used by another message.")},
        "local_id": {"description": "Echoed in the response; not stored. At most 256 bytes of JSON."},
        "idempotency_key": {"type": ["string", "null"], "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$", "description": "Or the `Idempotency-Key` header (the two must agree)."},
        "as_user_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 128, "pattern": "^\\S+$", "description": "Send on behalf of this member (caller's power ≥ 100)."},
    },
}
schemas["EditMessageV1"] = {
    "type": "object", "anyOf": [has_content, has_body],
    "description": "A non-blank `content`, or `body`, or both. `null` is the same as absent.",
    "properties": {"content": v1_content, "body": dict(obj, description="At most 64 KB serialized.")},
}
schemas["RedactMessageV1"] = {"type": "object", "properties": {"reason": {"type": ["string", "null"], "maxLength": 128, "description": "At most 128 characters."}}}
schemas["MessageVersion"] = {"type": "object", "additionalProperties": True, "description": "A previous version of a message: its content and body, and when it was current."}
send_400 = ["empty_message", "content_too_long", "invalid_content", "invalid_msgtype", "invalid_mentions", "invalid_gif",
            "too_many_media", "invalid_media", "invalid_parent", "invalid_quote", "invalid_as_user",
            "invalid_idempotency_key", "invalid_json", "invalid_request"]
paths["/v1/spaces/{spaceId}/messages"]["post"] = {
    "operationId": "sendMessageV1", "summary": "Send a message (the native model)", "tags": ["v1"],
    "parameters": [space_param, {"name": "Idempotency-Key", "in": "header", "required": False,
                   "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$"}}],
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": ref("SendMessageV1")},
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["payload"],
                       "description": "A first part `payload` (the JSON send), then up to 10 parts `file` (with `media_ids`, at most 10 together; each at most `--max-media-bytes`, its Content-Type the declared type, checked against the bytes as by `POST /v1/media`). Files count as content. One file is held at a time; nothing is stored before the payload is valid, the key is not a replay and the caller may post; the files of a refused send are deleted.",
                       "properties": {"payload": ref("SendMessageV1"),
                                      "file": {"type": "array", "maxItems": 10, "items": {"type": "string", "format": "binary"}}}},
            "encoding": {"payload": {"contentType": "application/json"}, "file": {"contentType": "application/octet-stream"}},
        },
    }},
    "responses": {
        "200": json_ok("The same sender already sent with this idempotency key within 5 minutes: the original message; nothing was created.", ref("MessageV1")),
        "201": json_ok("The message, once durable (with `local_id` echoed).", ref("MessageV1"), MESSAGE_LINKS),
        "400": err("Invalid message, or (multipart) a file whose bytes are not its declared type.", send_400 + ["media_type_mismatch", "empty_media", "invalid_image"]),
        "401": R401,
        "403": err("Not a member, not allowed to post, or `as_user_id` without power 100.", ["not_a_member", "forbidden"]),
        "415": err("(multipart) A file of a type not accepted.", ["unsupported_media_type"]),
        "404": r404(),
        "409": err("The idempotency key's message was deleted.", ["idempotency_key_reused"]),
        "413": err("`body` over 64 KB, `metadata` over 10 KB, or the request over `max_body_bytes`.", ["payload_too_large"]),
        "429": err("Over `--send-rate-limit`.", ["rate_limited"], {"rate_limited": "Too many messages; retry in 1 s"}, retry=True),
        "500": R500,
        "503": r503(ENGINE_503 + ["bus_unavailable"]),
    },
}
def v1_message_op(op, summary, body, desc, extra, body_required=False):
    r = {"operationId": op, "summary": summary, "tags": ["v1"], "parameters": [space_param, message_param], "description": desc,
         "responses": {"200": json_ok("The message after the change.", ref("MessageV1")), "401": R401,
                       "404": r404("Unknown space or message, or a private space the caller is not a member of."),
                       "500": R500, "503": r503(ENGINE_503)}}
    if body:
        r["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": ref(body)}}}
    r["responses"].update(extra)
    return {"post": r}
paths["/v1/spaces/{spaceId}/messages/{messageId}/edit"] = v1_message_op(
    "editMessageV1", "Edit a message", "EditMessageV1",
    "Author only, within `--edit-window` (default 24 h) of its creation. The previous version is kept (`…/history`); event `message_edited`.",
    {"400": err("Invalid edit.", ["empty_message", "content_too_long", "invalid_content", "invalid_json"]),
     "403": err("Not the author.", ["forbidden"]),
     "409": err("Too late, or redacted.", ["edit_window_closed", "message_redacted"]),
     "413": err("`body` over 64 KB.", ["payload_too_large"])}, body_required=True)
paths["/v1/spaces/{spaceId}/messages/{messageId}/redact"] = v1_message_op(
    "redactMessageV1", "Redact a message", "RedactMessageV1",
    "Its author, or power ≥ 50. Content, body, media (files deleted), metadata, gif and mentions are wiped; id, seq and thread position kept; edit history removed. Event `message_redacted`. Redacting again answers the message as it is.",
    {"400": err("Invalid reason.", ["invalid_reason", "invalid_json"]), "403": err("Not allowed.", ["forbidden"])})
paths["/v1/spaces/{spaceId}/messages/{messageId}/history"] = {"get": {
    "operationId": "messageHistoryV1", "summary": "A message's previous versions, newest first", "tags": ["v1"],
    "parameters": [space_param, message_param],
    "responses": {"200": json_ok("`{data}`", {"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": ref("MessageVersion")}}}),
                  "401": R401, "404": r404(), "500": R500, "503": r503(["store_unavailable"])}}}
paths["/v1/spaces/{spaceId}/messages/{messageId}/thread"] = {"get": {
    "operationId": "threadV1", "summary": "A message's replies, oldest first", "tags": ["v1"],
    "parameters": [space_param, message_param],
    "description": "At most 1000 replies per answer; `next_cursor` (non-null) continues with `GET …/messages?parent_id=<id>&direction=forward&cursor=…`.",
    "responses": {"200": json_ok("`{data, next_cursor}`", ref("MessageCursorPage")),
                  "401": R401, "404": r404(), "500": R500, "503": r503(["store_unavailable"])}}}
MSG.update({
    "invalid_reaction_key": "A reaction key is an emoji or a short name: 1 to 64 bytes of UTF-8, without spaces, control characters or /",
    "too_many_reactions": "a message has at most 50 different reactions",
})
key_param = {"name": "key", "in": "path", "required": True,
             "description": "An emoji or a short name, percent-encoded: 1 to 64 bytes of UTF-8 once decoded, without whitespace, control characters or `/`.",
             "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\s/\\x00-\\x1f\\x7f-\\x9f]+$"}}
schemas["ReactionResult"] = {
    "type": "object", "required": ["message_id", "key", "reacted", "changed", "reaction_counts"],
    "properties": {
        "message_id": uuid_str(),
        "key": {"type": "string"},
        "reacted": {"type": "boolean", "description": "Whether the caller has the reaction now."},
        "changed": {"type": "boolean", "description": "Whether this call changed it (false: it already was so; no event)."},
        "reaction_counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
    },
}
def reaction_op(method, op, summary, desc):
    return {"operationId": op, "summary": summary, "tags": ["v1"], "parameters": [space_param, message_param, key_param],
            "description": desc,
            "responses": {"200": json_ok("The message's reaction counts after the call, once durable.", ref("ReactionResult")),
                          "400": err("Invalid key.", ["invalid_reaction_key"]),
                          "401": R401,
                          "404": r404("Unknown space or message, or a private space the caller is not a member of."),
                          "409": err("A new key on a message with 50 keys already.", ["too_many_reactions"]),
                          "500": R500, "503": r503(ENGINE_503)}}
paths["/v1/spaces/{spaceId}/messages/{messageId}/reactions/{key}"] = {
    "put": reaction_op("put", "setReactionV1", "React to a message",
                       "Idempotent per user: reacting again changes nothing. A change is the event `reaction_changed` (the next seq). O(1) whatever the message holds. `appreciate` is Space7's appreciation."),
    "delete": reaction_op("delete", "removeReactionV1", "Remove a reaction",
                          "Idempotent per user. A change is the event `reaction_changed` with `added: false`."),
}
paths["/v1/spaces/{spaceId}/stats"] = {"get": {
    "operationId": "spaceStatsV1", "summary": "A space's message statistics", "tags": ["v1"],
    "parameters": [space_param],
    "description": "Maintained by the space's actor with every send, delete, edit and redaction, committed with them, and read from one stored row (never a scan of history). Counts are of existing messages (deleted ones leave every count). `threads`: thread roots with at least one reply. A redacted message keeps its msgtype and still counts in `total_messages` and its sender's `messages`, but its words and attachments no longer count. `first_message_at` / `last_message_at`: creation times of the existing messages with the lowest / highest seq (`null` without messages). `top_contributors`: the 10 senders with the most words in their existing messages, ties by messages, then by user id. Readable by whoever may read the space; every write acknowledged before the request is included.",
    "responses": {"200": json_ok("The statistics.", ref("SpaceStatsV1")),
                  "401": R401, "404": r404(), "500": R500, "503": r503(ENGINE_503)}}}
SPACE_LINKS["SpaceStatsV1"] = link("spaceStatsV1", "The new space's statistics.", spaceId="$response.body#/space_id")
schemas.update({
    "SpaceStatsV1": {
        "type": "object",
        "required": ["total_messages", "by_msgtype", "with_attachments", "threads", "redacted",
                     "first_message_at", "last_message_at", "top_contributors"],
        "additionalProperties": False,
        "properties": {
            "total_messages": {"type": "integer", "minimum": 0, "description": "Existing messages, redacted ones included."},
            "by_msgtype": {"type": "object", "description": "Existing messages per `msgtype` (only types with at least one).",
                           "propertyNames": {"maxLength": 64, "pattern": MSGTYPE_PATTERN},
                           "additionalProperties": {"type": "integer", "minimum": 1}},
            "with_attachments": {"type": "integer", "minimum": 0, "description": "Existing messages with media (the `has_attachment` filter's rule); redacted ones have none."},
            "threads": {"type": "integer", "minimum": 0, "description": "Existing thread roots with at least one existing reply."},
            "redacted": {"type": "integer", "minimum": 0, "description": "Existing redacted messages."},
            "first_message_at": {"oneOf": [ts, {"type": "null"}], "description": "Creation time of the oldest existing message (lowest seq)."},
            "last_message_at": {"oneOf": [ts, {"type": "null"}], "description": "Creation time of the newest existing message (highest seq)."},
            "top_contributors": {"type": "array", "maxItems": 10, "items": ref("ContributorV1"),
                                 "description": "Best first: by `word_count`, then `messages`, then `user_id`."},
        },
    },
    "ContributorV1": {
        "type": "object",
        "required": ["user_id", "messages", "word_count"],
        "additionalProperties": False,
        "properties": {
            "user_id": {"type": "string"},
            "messages": {"type": "integer", "minimum": 1, "description": "Their existing messages."},
            "word_count": {"type": "integer", "minimum": 0, "description": "Words in their existing messages as they read now (edits count, redacted text does not)."},
        },
    },
})
paths["/v1/spaces/{spaceId}/messages"]["get"]["parameters"] += [
    {"name": "msgtype", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 64, "pattern": MSGTYPE_PATTERN}},
    {"name": "parent_id", "in": "query", "required": False, "description": "Replies to this message.", "schema": {"type": "string", "format": "uuid"}},
]

paths["/v1/spaces/{spaceId}/messages/{messageId}"] = {"get": {
    "operationId": "getMessageV1", "summary": "One message", "tags": ["v1"],
    "parameters": [space_param, message_param],
    "responses": {
        "200": json_ok("The message.", ref("MessageV1")),
        "401": R401,
        "404": r404("Unknown or malformed space or message id, or a private space the caller is not a member of."),
        "500": R500,
        "503": r503(["store_unavailable"]),
    },
}}

# ---- Members and roles (api/src/routes/v1_members.rs) ----
MSG.update({
    "invalid_power_level": "power_level is required: 0, 50 or 100",
    "invalid_posting_permission": "posting_permission is required: \"everyone\" or \"admins\"",
    "invalid_user_id": "user id must not contain whitespace",
    "member_not_found": "Member not found",
    "last_admin": "The last admin cannot leave while other members remain",
})
# A user id as the token rules have it: no whitespace, no control, format or separator
# characters (the common ones are listed; the server's rule is the Unicode categories).
USER_ID_PATTERN = "^[^\\s\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\U000110bd\\U000110cd\\U00013430-\\U0001343f\\U0001bca0-\\U0001bca3\\U0001d173-\\U0001d17a\\U000e0001-\\U000e007f]+$"
MEMBER_CURSOR_PATTERN = "^M[A-Za-z0-9_-]+$"
user_param = {"name": "userId", "in": "path", "required": True,
              "description": "The member's user id (percent-encoded in the path): 1 to 128 bytes, no whitespace, control, format or separator characters (else 400 `invalid_user_id`).",
              "schema": {"type": "string", "minLength": 1, "maxLength": 32, "pattern": USER_ID_PATTERN}}
schemas["MemberV1"] = {
    "type": "object", "required": ["user_id", "username", "profile_picture", "power_level", "joined_at"],
    "properties": {
        "user_id": {"type": "string"},
        "username": {"type": "string", "description": "The user id for a user added by `PUT`, until their first send stores their token's profile."},
        "profile_picture": {"type": "string"},
        "power_level": {"type": "integer", "enum": [0, 50, 100], "description": "0 member, 50 moderator, 100 admin."},
        "joined_at": {"type": "string", "format": "date-time"},
    },
}
schemas["MemberPageV1"] = {
    "type": "object", "required": ["data", "next_cursor"],
    "properties": {
        "data": {"type": "array", "items": ref("MemberV1"), "maxItems": 100},
        "next_cursor": {"type": ["string", "null"], "description": "Continues after this page; `null` on the last page."},
    },
}
schemas["SetPowerV1"] = {
    "type": "object", "required": ["power_level"],
    "properties": {"power_level": {"type": "integer", "enum": [0, 50, 100]}},
}
schemas["PatchSpaceV1"] = {
    "type": "object", "required": ["posting_permission"],
    "properties": {"posting_permission": {"type": "string", "enum": ["everyone", "admins"],
                   "description": "`admins`: only members with power ≥ 50 may post (403 `forbidden` on every surface)."}},
}
members_desc = "Visible to any authenticated caller for a public space, to members only for a private one (404 `not_found` to anyone else, as for an unknown space)."
paths["/v1/spaces/{spaceId}/members"] = {"get": {
    "operationId": "listMembersV1", "summary": "A cursor page of a space's members, by user id", "tags": ["v1"],
    "parameters": [space_param,
        {"name": "cursor", "in": "query", "required": False, "description": "`next_cursor` of the previous page (opaque).", "schema": {"type": "string", "pattern": MEMBER_CURSOR_PATTERN}},
        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}}],
    "description": "Members ordered by user id (byte order), keyset pages: every member present during the whole walk is listed exactly once. " + members_desc,
    "responses": {
        "200": json_ok("One page.", ref("MemberPageV1")),
        "400": err("Invalid query parameter.", ["invalid_pagination", "invalid_cursor"]),
        "401": R401, "404": r404(), "500": R500, "503": r503(["store_unavailable"]),
    },
}}
member_404 = err("Unknown space, a private space the caller is not a member of, or a user who is not a member.", ["not_found", "member_not_found"])
paths["/v1/spaces/{spaceId}/members/{userId}"] = {
    "get": {
        "operationId": "getMemberV1", "summary": "One member", "tags": ["v1"],
        "parameters": [space_param, user_param], "description": members_desc,
        "responses": {"200": json_ok("The member.", ref("MemberV1")),
                      "400": err("Invalid user id.", ["invalid_user_id"]),
                      "401": R401, "404": member_404, "500": R500, "503": r503(["store_unavailable"])},
    },
    "put": {
        "operationId": "setMemberPowerV1", "summary": "Set a member's power level, or add a member", "tags": ["v1"],
        "parameters": [space_param, user_param],
        "description": "Only a member whose power level is higher than both the target's current level and the new one may change it (a non-member counts as 0 and is added: this is how a private space gets members). So nobody changes their own or an equal's level, an admin (100) grants 0 or 50 but never 100, and an admin's level (the creator's included) never changes. Event `member_updated`; setting the current level changes nothing.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref("SetPowerV1")}}},
        "responses": {"200": json_ok("The member after the change.", ref("MemberV1")),
                      "400": err("Invalid body or user id.", ["invalid_power_level", "invalid_user_id", "invalid_json"]),
                      "401": R401,
                      "403": err("Not allowed by the rule, or not a member.", ["forbidden", "not_a_member"]),
                      "404": r404(), "413": r413(), "500": R500, "503": r503(ENGINE_503)},
    },
    "delete": {
        "operationId": "removeMemberV1", "summary": "Remove a member, or leave", "tags": ["v1"],
        "parameters": [space_param, user_param],
        "description": "The caller's own id: leave (always allowed, except for the last admin while other members remain: 409 `last_admin`). Another member: a kick, by power ≥ 50 and higher than the member's. Event `member_removed`; in a private space the removed user loses read access (REST reads 404, realtime subscriptions end with `left` / `left_space` and `reason: \"removed\"`).",
        "responses": {"204": {"description": "Removed (durable)."},
                      "400": err("Invalid user id.", ["invalid_user_id"]),
                      "401": R401,
                      "403": err("Not allowed.", ["forbidden", "not_a_member"]),
                      "404": member_404,
                      "409": err("The last admin cannot leave while others remain.", ["last_admin"]),
                      "500": R500, "503": r503(ENGINE_503)},
    },
}
paths["/v1/spaces/{spaceId}"] = {"patch": {
    "operationId": "patchSpaceV1", "summary": "Change a space's posting permission", "tags": ["v1"],
    "parameters": [space_param],
    "description": "Power 100 only. Event `space_updated`; setting the current value changes nothing.",
    "requestBody": {"required": True, "content": {"application/json": {"schema": ref("PatchSpaceV1")}}},
    "responses": {"200": json_ok("The space after the change.", ref("Space")),
                  "400": err("Invalid body.", ["invalid_posting_permission", "invalid_json"]),
                  "401": R401,
                  "403": err("Not an admin, or not a member.", ["forbidden", "not_a_member"]),
                  "404": r404(), "413": r413(), "500": R500, "503": r503(ENGINE_503)},
}}
SPACE_LINKS.update({
    "ListMembersV1": link("listMembersV1", "The new space's members.", spaceId="$response.body#/space_id"),
    "GetMemberV1": link("getMemberV1", "The creator's membership.", spaceId="$response.body#/space_id", userId="$response.body#/creator_id"),
    "SetMemberPowerV1": link("setMemberPowerV1", "Add the creator again (refused: an admin's level never changes).", spaceId="$response.body#/space_id", userId="$response.body#/creator_id"),
    "PatchSpaceV1": link("patchSpaceV1", "Change the new space's posting permission.", spaceId="$response.body#/space_id"),
})

# ---- The web console and the operator endpoint (api/src/routes/console.rs, api/src/routes/node.rs) ----
MSG.update({
    "invalid_username": "username may contain only letters, digits, '_', '-' and '.'",
    "rate_limited": "Too many dev logins on this node; retry shortly",
})

console_headers = {
    "Content-Security-Policy": {"description": "`default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self' blob:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'` (with `--public-url`, its origin is added to `img-src` and `media-src`).", "schema": {"type": "string"}},
    "ETag": {"description": "Strong validator: the FNV-1a hash of the file's bytes (computed at build time).", "schema": {"type": "string"}},
    "Cache-Control": {"description": "`no-cache`: revalidate with `If-None-Match` on every load (a match is a 304).", "schema": {"type": "string"}},
}

schemas.update({
    "NodeStatus": {
        "type": "object",
        "description": "What this node is doing. Gauges are read at request time; rates are averaged over a sliding window of samples of the node's counters, taken once a second (at most 11 kept).",
        "required": ["node_id", "version", "started_at", "uptime_seconds", "clustered", "bus_connected", "accepting", "store",
                     "connections", "realtime_connection_limit", "active_spaces", "watched_spaces",
                     "sends_per_second", "deliveries_per_second", "rate_window_seconds"],
        "properties": {
            "node_id": {"type": "string", "description": "`--node-id` (or the generated one); the same as in `hello` frames."},
            "version": {"type": "string", "description": "The server's version."},
            "started_at": ts,
            "uptime_seconds": {"type": "integer", "minimum": 0},
            "clustered": {"type": "boolean", "description": "True in cluster mode (`--nats-url`)."},
            "bus_connected": {"type": "boolean", "description": "The cluster bus (NATS) is connected; always true on a single node."},
            "accepting": {"type": "boolean", "description": "False once shutdown started."},
            "store": {"type": "string", "enum": ["embedded", "cql"]},
            "connections": {
                "type": "object", "required": ["native", "socketio", "http"],
                "description": "Open connections by protocol: realtime sessions (`spacecast_ws_sessions{protocol}`) and HTTP connections not upgraded (`spacecast_http_connections`).",
                "properties": {
                    "native": {"type": "integer", "description": "`/v1/stream` sessions."},
                    "socketio": {"type": "integer", "description": "Socket.IO sessions."},
                    "http": {"type": "integer", "description": "HTTP connections (this request's included)."},
                },
            },
            "realtime_connection_limit": {"type": "integer", "description": "The effective `--max-connections` (after fitting the descriptor limit)."},
            "active_spaces": {"type": "integer", "description": "Space actors running on this node (spaces it owns with recent activity)."},
            "watched_spaces": {"type": "integer", "description": "Spaces with at least one realtime subscriber on this node."},
            "sends_per_second": {"type": "number", "description": "Messages made durable per second by the spaces this node owns (`message_created` events committed; in a cluster, counted on the owner)."},
            "deliveries_per_second": {"type": "number", "description": "Event frames written per second to this node's subscribers, every protocol."},
            "rate_window_seconds": {"type": "number", "description": "The span the rates are averaged over: about 10 s, less just after start."},
        },
    },
    "DevLoginStatus": {
        "type": "object", "required": ["dev_login"],
        "properties": {
            "dev_login": {"type": "boolean", "const": True},
            "user_id_prefix": {"type": "string", "const": "dev-"},
            "username_max_chars": {"type": "integer", "const": 32},
            "username_pattern": {"type": "string"},
        },
    },
    "DevLoginRequest": {
        "type": "object", "required": ["username"], "additionalProperties": False,
        "description": "Any other field gives 400 `invalid_request` (the body is at most 1 KiB).",
        "properties": {"username": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,32}$",
                                    "description": "Trimmed; 1–32 ASCII letters, digits, `_`, `-`, `.`."}},
    },
    "DevLoginResult": {
        "type": "object", "required": ["token", "user_id", "username", "expires_at"],
        "properties": {
            "token": {"type": "string", "description": "An HS256 JWT signed with the generated secret, valid 24 h."},
            "user_id": {"type": "string", "description": "`dev-<username>`: the same name always gives the same user."},
            "username": {"type": "string"},
            "expires_at": {"type": "integer", "description": "The token's `exp` (seconds since the Unix epoch)."},
        },
    },
})

dev_desc = ("Exists only when the server runs with `--console-dev-login` (`SPACECAST_CONSOLE_DEV_LOGIN`, TOML `console_dev_login`), "
            "which is off by default and refused at start together with `--jwt-secret`, `--jwt-public-key` or `--nats-url` "
            "(it needs the secret the server generated into its data dir); otherwise 404 `not_found`. Development only: anyone "
            "who reaches it can sign in as any `dev-*` user.")

paths.update({
    "/v1/node": {"get": {
        "operationId": "nodeStatus", "summary": "This node's status, connections and rates (the console's operator tab)", "tags": ["operations"],
        "description": "Any valid token may read it (it names no user and no space). Cheap: a few atomic reads and a short window of kept samples; it does not scrape `/metrics`. The console polls it every 2 s while its operator tab is open.",
        "responses": {
            "200": json_ok("The node's status.", ref("NodeStatus")),
            "401": R401,
        },
    }},
    "/console": {"get": {
        "operationId": "console", "summary": "The web console (HTML page)", "tags": ["console"],
        "security": no_sec,
        "description": "The console's page, also at `/console/`. Its files are embedded in the binary (no external CDN: it works offline); the page signs in with a pasted token (kept in `localStorage`) or, in development, the dev-login button. Answers 304 to a matching `If-None-Match`.",
        "responses": {
            "200": {"description": "The page.", "headers": console_headers, "content": {"text/html": {"schema": {"type": "string"}}}},
            "304": {"description": "Not modified (the `If-None-Match` names the current `ETag`).", "headers": console_headers},
        },
    }},
    "/console/{asset}": {"get": {
        "operationId": "consoleAsset", "summary": "A file of the web console", "tags": ["console"],
        "security": no_sec,
        "parameters": [{"name": "asset", "in": "path", "required": True,
                        "description": "A file name: `app.js`, `api.js`, `stream.js`, `chat.js`, `operator.js`, `dom.js`, `style.css`, `icon.svg`, `index.html`.",
                        "schema": {"type": "string"}}],
        "description": "The console's ES modules, stylesheet and icon, with their content types (`text/javascript`, `text/css`, `image/svg+xml`). Any other name gives the JSON 404.",
        "responses": {
            "200": {"description": "The file.", "headers": console_headers,
                    "content": {"text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}},
                                "image/svg+xml": {"schema": {"type": "string"}}}},
            "304": {"description": "Not modified.", "headers": console_headers},
            "404": err("No such file.", ["not_found"], {"not_found": "Console asset not found"}),
        },
    }},
    "/console/dev-login": {
        "get": {
            "operationId": "devLoginStatus", "summary": "Whether development login is on", "tags": ["console"],
            "security": no_sec,
            "description": "200 when development login is on (the console then shows its dev-login button), else 404. " + dev_desc,
            "responses": {
                "200": json_ok("Development login is on.", ref("DevLoginStatus")),
                "404": err("Development login is off.", ["not_found"], {"not_found": "Route not found"}),
            },
        },
        "post": {
            "operationId": "devLogin", "summary": "Mint a development token (development only)", "tags": ["console"],
            "security": no_sec,
            "description": dev_desc + " At most 10 tokens at once per node, then one every 6 s (429 beyond).",
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref("DevLoginRequest")}}},
            "responses": {
                "200": json_ok("A token for `dev-<username>`.", ref("DevLoginResult")),
                "400": err("Invalid body or username.", ["invalid_username", "invalid_json", "invalid_request"]),
                "404": err("Development login is off.", ["not_found"], {"not_found": "Route not found"}),
                "413": err("The body exceeds 1 KiB.", ["payload_too_large"], {"payload_too_large": "The request body exceeds 1024 bytes"}),
                "429": err("The node's mint budget is spent; retry after `Retry-After` seconds.", ["rate_limited"], retry=True),
            },
        },
    },
})

# Connection-level answers (see "HTTP limits" above) are possible on every operation.
for _path, _ops in paths.items():
    for _op in _ops.values():
        _r = _op["responses"]
        _r.setdefault("414", rr("UriTooLong"))
        _r.setdefault("431", rr("HeadersTooLarge"))
        if "503" not in _r:
            _r["503"] = rr("ConnectionCap")
        elif "$ref" not in _r["503"]:
            _ex = _r["503"]["content"]["application/json"]["examples"]
            if "overloaded" not in _ex:
                _ex["overloaded"] = {"value": {"error": "Too many HTTP connections; retry shortly", "code": "overloaded"}}
                _r["503"]["description"] += " Also `overloaded` at the HTTP connection limit."

doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "Spacecast",
        "version": "0.1.0",
        "summary": "A realtime messaging engine: spaces, messages, and a resumable realtime stream.",
        "description": info_desc,
    },
    "servers": [{"url": "/"}],
    "tags": [
        {"name": "spaces", "description": "Space7 spaces."},
        {"name": "messages", "description": "Space7 messages."},
        {"name": "media", "description": "Media files of messages."},
        {"name": "realtime", "description": "The native WebSocket stream and Socket.IO."},
        {"name": "console", "description": "The web console served by the binary, and its development login."},
        {"name": "operations", "description": "Health, readiness, metrics and this document; no authentication."},
    ],
    "security": [{"bearerAuth": []}],
    "paths": paths,
    "components": {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "`Authorization: Bearer <JWT>`. Claims: the user id in `sub` or `user_id` (string or number, 1–128 bytes, no whitespace, no control, format or bidi characters), `username` (trimmed, at most 64 characters, no control or bidi/format characters except ZWJ/ZWNJ; defaults to the user id), `picture` or `profile_picture` (an absolute `https:`/`http:` URL of at most 2,048 bytes; defaults to `\"\"`), `exp` (required), `nbf` and `iat` (optional; neither may be in the future), all with a 30 s leeway. Claims outside these bounds give 401 `invalid_claims` naming the claim. Signed with HS256 (the server's shared secret) or RS256 / ES256 / EdDSA (the configured public key). Anything else is 401.",
            },
            "tokenQuery": {
                "type": "apiKey", "in": "query", "name": "token",
                "description": "The same JWT as a `token` query parameter; accepted only by `GET /v1/stream`, when no Authorization header is sent.",
            },
        },
        "headers": headers,
        "parameters": parameters,
        "responses": responses,
        "schemas": schemas,
    },
}

with open(ROOT + '/api/openapi.json', 'w') as f:
    json.dump(doc, f, indent=2, ensure_ascii=False)
    f.write("\n")
print(len(CODES), CODES)
