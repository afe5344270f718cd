//! Client input shared by every protocol (REST routes and the realtime sessions): ids as clients
//! name them, and message text. Neither `routes` nor `realtime` owns it, so neither imports the
//! other.

use spacecast_engine::model::{MessageId, SpaceId};

use crate::error::ApiError;

/// A `/v1` list's `limit` query parameter: `default` when absent, else an integer from 1 to
/// `max` (surrounding spaces allowed).
///
/// # Errors
/// 400 `invalid_pagination`.
pub fn parse_limit(
    q: &std::collections::HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                "invalid_pagination",
                format!("limit must be an integer from 1 to {max}"),
            )),
        },
    }
}

/// Parses a space id from a path or frame; anything that is not one is an unknown space.
///
/// # Errors
/// 404 `not_found` "Space not found", the answer for an unknown space.
pub fn parse_space_id(raw: &str) -> Result<SpaceId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("Space not found"))
}

/// Parses a message id from a path; anything that is not one is an unknown message.
///
/// # Errors
/// 404 `not_found` "Message not found".
pub fn parse_message_id(raw: &str) -> Result<MessageId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("Message not found"))
}

/// Whether `text` holds a control character (Unicode Cc: NUL and the rest of C0, DEL, C1),
/// other than tab, newline and carriage return when `allow_line_breaks`. Such characters have no
/// place in text people read, and some (NUL, ESC) break or drive the tools that display it.
pub fn has_control_chars(text: &str, allow_line_breaks: bool) -> bool {
    text.chars()
        .any(|c| c.is_control() && !(allow_line_breaks && matches!(c, '\t' | '\n' | '\r')))
}

/// Trims message text; empty or whitespace-only text is no text. Shared by REST and the stream.
///
/// # Errors
/// 400 `invalid_content` for control characters other than `\t \n \r`; 400
/// `content_too_long` beyond `max_chars` characters.
pub fn normalize_content(
    raw: Option<String>,
    max_chars: usize,
) -> Result<Option<String>, ApiError> {
    let content = raw.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if let Some(c) = &content {
        if has_control_chars(c, true) {
            return Err(ApiError::bad_request(
                "invalid_content",
                "content must not contain control characters other than tab, newline and carriage return",
            ));
        }
        if c.chars().count() > max_chars {
            return Err(ApiError::bad_request(
                "content_too_long",
                format!("content must be at most {max_chars} characters"),
            ));
        }
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_with_control_characters_is_refused() {
        let ok = normalize_content(Some(" a\tb\r\nc ".into()), 100).unwrap();
        assert_eq!(ok.as_deref(), Some("a\tb\r\nc"));
        for bad in ["\u{0}", "a\u{1b}b", "\u{7f}", "x\u{85}y"] {
            let e = normalize_content(Some(bad.into()), 100).unwrap_err();
            assert_eq!(e.code, "invalid_content", "{bad:?}");
        }
        assert!(has_control_chars("a\nb", false));
        assert!(!has_control_chars("a\nb", true));
    }

    #[test]
    fn ids_that_are_not_uuids_are_unknown_resources() {
        let e = parse_space_id("not-a-uuid").unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.code, e.message.as_str()),
            (404, "not_found", "Space not found")
        );
        let e = parse_message_id("../etc").unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.code, e.message.as_str()),
            (404, "not_found", "Message not found")
        );
        let id = uuid::Uuid::now_v7();
        assert_eq!(parse_space_id(&id.to_string()).unwrap(), id);
    }
}
