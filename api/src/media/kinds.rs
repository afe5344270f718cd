//! Which files `/v1/media` accepts, and how a declared type is checked against the bytes.
//!
//! The type is decided by the bytes (their signature, read by `infer`), never by the client:
//!
//! | kind  | accepted (canonical names)                                                        |
//! |-------|-----------------------------------------------------------------------------------|
//! | image | `image/png`, `image/jpeg`, `image/gif`, `image/webp` (these get a thumbnail)       |
//! | video | `video/mp4`, `video/webm`, `video/quicktime`                                        |
//! | audio | `audio/mpeg`, `audio/ogg`, `audio/wav`, `audio/flac`, `audio/aac`, `audio/mp4`      |
//! | other | `application/pdf`; `text/plain` only for UTF-8 text (no control characters but  |
//! |       | tab, LF, FF, CR) in which nothing else is detected                                 |
//!
//! Anything else (a zip, an ELF, HTML, an undetectable binary) is 415 `unsupported_media_type`,
//! whatever was declared. A declared type that names something else than the bytes are is 400
//! `media_type_mismatch`. The declaration is normalised first:
//! - parameters are dropped and case ignored (`Image/PNG; charset=x` is `image/png`);
//! - aliases name their canonical type: `image/jpg`, `image/pjpeg` → `image/jpeg`; `audio/mp3`,
//!   `audio/mpeg3`, `audio/x-mpeg` → `audio/mpeg`; `audio/x-wav`, `audio/wave`, `audio/vnd.wave` →
//!   `audio/wav`; `audio/x-flac` → `audio/flac`; `audio/x-aac`, `audio/aacp` → `audio/aac`;
//!   `audio/x-m4a`, `audio/m4a` → `audio/mp4`; `video/x-m4v` → `video/mp4`; `audio/opus` →
//!   `audio/ogg`; `application/x-pdf` → `application/pdf`;
//! - `audio/mp4` declared for bytes detected as `video/mp4` is accepted as `audio/mp4` (the same
//!   container; an audio-only MP4 often carries a generic `isom` brand);
//! - no declaration, or `application/octet-stream` (what browsers and curl send for a file they
//!   know nothing about), means "detect it": the detected type is used.

use crate::error::ApiError;
use warp::http::StatusCode;

/// The accepted content types (canonical names).
pub const ACCEPTED: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "video/mp4",
    "video/webm",
    "video/quicktime",
    "audio/mpeg",
    "audio/ogg",
    "audio/wav",
    "audio/flac",
    "audio/aac",
    "audio/mp4",
    "application/pdf",
    "text/plain",
];

/// The canonical name of a type or alias (lower-case, without parameters).
pub fn canonical(content_type: &str) -> String {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let alias = match base.as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "audio/mp3" | "audio/mpeg3" | "audio/x-mpeg" | "audio/x-mp3" => "audio/mpeg",
        "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "audio/wav",
        "audio/x-flac" => "audio/flac",
        "audio/x-aac" | "audio/aacp" => "audio/aac",
        "audio/x-m4a" | "audio/m4a" => "audio/mp4",
        "video/x-m4v" => "video/mp4",
        "audio/opus" => "audio/ogg",
        "application/x-pdf" => "application/pdf",
        _ => return base,
    };
    alias.to_owned()
}

/// Whether the content type is an image this server makes thumbnails of.
pub fn is_image(content_type: &str) -> bool {
    content_type.starts_with("image/")
}

/// Whether files of this type are shown inline (images, video, audio); the others are served
/// as attachments.
pub fn is_inline(content_type: &str) -> bool {
    ["image/", "video/", "audio/"]
        .iter()
        .any(|p| content_type.starts_with(p))
}

/// The file name extension of an accepted type (for `Content-Disposition: attachment`).
pub fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "video/quicktime" => "mov",
        "audio/mpeg" => "mp3",
        "audio/ogg" => "ogg",
        "audio/wav" => "wav",
        "audio/flac" => "flac",
        "audio/aac" => "aac",
        "audio/mp4" => "m4a",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        _ => "bin",
    }
}

/// Whether the bytes are plain text: valid UTF-8 without control characters other than tab,
/// line feed, form feed and carriage return (a NUL or DEL says binary, even if it is ASCII).
fn is_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| {
        !s.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\x0c' | '\r'))
    })
}

/// The canonical type the bytes are, if they are an accepted type; `Err(())` when they are
/// something else (detected but not accepted, or undetectable binary).
fn detect(bytes: &[u8]) -> Result<String, ()> {
    match infer::get(bytes) {
        Some(t) => {
            let c = canonical(t.mime_type());
            if ACCEPTED.contains(&c.as_str()) && c != "text/plain" {
                Ok(c)
            } else {
                Err(())
            }
        }
        None if is_text(bytes) => Ok("text/plain".to_owned()),
        None => Err(()),
    }
}

/// Checks an upload's bytes against its declared type; returns the canonical content type to
/// store and serve. Pure: nothing is written before it passes.
///
/// # Errors
/// 400 `empty_media` for no bytes; 415 `unsupported_media_type` when the bytes are not an
/// accepted type; 400 `media_type_mismatch` when they are, but not the declared one.
pub fn check(declared: Option<&str>, bytes: &[u8]) -> Result<String, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("empty_media", "The file is empty"));
    }
    let detected = detect(bytes).map_err(|()| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "The file is not an accepted type; accepted: {}",
                ACCEPTED.join(", ")
            ),
        )
    })?;
    let declared = declared
        .map(canonical)
        .filter(|d| !d.is_empty() && d != "application/octet-stream");
    match declared {
        None => Ok(detected),
        Some(d) if d == detected => Ok(detected),
        Some(d) if d == "audio/mp4" && detected == "video/mp4" => Ok(d),
        Some(d) => Err(ApiError::bad_request(
            "media_type_mismatch",
            format!("The file was declared {d} but its bytes are {detected}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
    const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";
    const ZIP: &[u8] = b"PK\x03\x04\x14\0\0\0\x08\0";
    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0";

    fn code(r: Result<String, ApiError>) -> (u16, &'static str) {
        let e = r.unwrap_err();
        (e.status.as_u16(), e.code)
    }

    #[test]
    fn the_bytes_decide_and_aliases_and_parameters_are_normalised() {
        assert_eq!(check(Some("image/png"), PNG).unwrap(), "image/png");
        assert_eq!(check(Some("Image/PNG; q=1"), PNG).unwrap(), "image/png");
        assert_eq!(check(Some("image/jpg"), JPEG).unwrap(), "image/jpeg");
        assert_eq!(check(None, JPEG).unwrap(), "image/jpeg");
        assert_eq!(
            check(Some("application/octet-stream"), PDF).unwrap(),
            "application/pdf"
        );
        assert_eq!(
            check(Some("text/plain; charset=utf-8"), "héllo".as_bytes()).unwrap(),
            "text/plain"
        );
        assert_eq!(
            check(Some("image/jpeg"), PNG).map_err(|e| e.code),
            Err("media_type_mismatch")
        );
        assert_eq!(
            code(check(Some("text/plain"), PNG)),
            (400, "media_type_mismatch")
        );
        assert_eq!(
            code(check(Some("image/png"), b"hello")),
            (400, "media_type_mismatch")
        );
    }

    #[test]
    fn other_files_are_unsupported_whatever_was_declared() {
        for bytes in [ZIP, ELF, b"\0\xff\xfe binary".as_slice()] {
            assert_eq!(
                code(check(Some("image/png"), bytes)),
                (415, "unsupported_media_type")
            );
            assert_eq!(code(check(None, bytes)), (415, "unsupported_media_type"));
        }
        assert_eq!(code(check(Some("text/plain"), b"")), (400, "empty_media"));
    }

    #[test]
    fn dispositions_and_extensions() {
        assert!(is_inline("image/png") && is_inline("audio/mp4") && is_inline("video/webm"));
        assert!(!is_inline("application/pdf") && !is_inline("text/plain"));
        for t in ACCEPTED {
            assert_ne!(extension(t), "bin", "{t}");
            assert_eq!(canonical(t), *t);
        }
    }
}
