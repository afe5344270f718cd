//! Thumbnails of uploaded images: decoded and re-encoded with the `image` crate (only the
//! PNG, JPEG, GIF and WebP decoders and the JPEG encoder are built), on tokio's blocking pool,
//! never on the async runtime.
//!
//! Guarantees:
//! - a thumbnail fits within [`MAX_SIDE`]×[`MAX_SIDE`], keeps the aspect ratio (never
//!   upscaled), honours the EXIF orientation, and is a baseline JPEG (transparency flattened
//!   onto white);
//! - decoding is bounded by [`image::Limits`]: at most [`MAX_DIMENSION`] pixels a side and
//!   [`MAX_DECODE_BYTES`] for the decoded pixels, checked from the header before the pixel
//!   buffer is allocated, so a decompression bomb (a small PNG declaring 100000×100000) is
//!   refused with 400 `invalid_image` without using its memory; so is any image the decoder
//!   cannot read;
//! - at most `workers` thumbnails are made at once and at most `queue` more wait; beyond that
//!   an upload is refused with 503 `overloaded` and `Retry-After`, never queued without bound.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use tokio::sync::Semaphore;
use warp::http::StatusCode;

use crate::error::ApiError;

/// The largest side of a thumbnail, in pixels.
pub const MAX_SIDE: u32 = 320;
/// The largest side of an image that gets a thumbnail (larger ones are refused).
pub const MAX_DIMENSION: u32 = 16_384;
/// The most memory the decoder may allocate for one image (its decoded pixels count).
pub const MAX_DECODE_BYTES: u64 = 128 * 1024 * 1024;
/// JPEG quality of thumbnails.
const QUALITY: u8 = 80;

/// A made thumbnail.
#[derive(Debug)]
pub struct Thumbnail {
    /// JPEG bytes.
    pub bytes: Bytes,
    pub width: u32,
    pub height: u32,
}

/// The bounded pool that makes thumbnails (one per server, in [`crate::app::App`]).
#[derive(Debug, Clone)]
pub struct Thumbnailer {
    /// Admission: `workers + queue` permits; none left → 503.
    admitted: Arc<Semaphore>,
    /// Work: `workers` permits.
    working: Arc<Semaphore>,
}

impl Thumbnailer {
    /// A pool of `workers` (at least one) concurrent decodes with `queue` waiting places.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        Thumbnailer {
            admitted: Arc::new(Semaphore::new(workers + queue)),
            working: Arc::new(Semaphore::new(workers)),
        }
    }

    /// The default pool: one worker per CPU, four waiting places per worker.
    pub fn for_this_machine() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::new(cpus, 4 * cpus)
    }

    /// Makes the thumbnail of `bytes` (an image of `content_type`) on the blocking pool.
    ///
    /// # Errors
    /// 503 `overloaded` (with `Retry-After`) when the pool and its queue are full; 400
    /// `invalid_image` when the image cannot be decoded within the limits.
    pub async fn make(&self, bytes: Bytes, content_type: &str) -> Result<Thumbnail, ApiError> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError {
                retry_after: Some(Duration::from_secs(1)),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "Too many images are being processed; retry shortly",
                )
            })?;
        let format = ImageFormat::from_mime_type(content_type)
            .ok_or_else(|| invalid_image(format!("no decoder for {content_type}")))?;
        let working = self
            .working
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("thumbnail pool closed"))?;
        // The permits move into the task: if the request goes away meanwhile, the decode
        // still counts against the pool until it ends.
        tokio::task::spawn_blocking(move || {
            let _permits = (admitted, working);
            render(&bytes, format)
        })
        .await
        .map_err(|e| ApiError::internal(format!("thumbnail task failed: {e}")))?
    }
}

fn invalid_image(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "invalid_image",
        format!("The image cannot be processed: {why}"),
    )
}

/// The decoding limits of every upload.
fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_DIMENSION);
    l.max_image_height = Some(MAX_DIMENSION);
    l.max_alloc = Some(MAX_DECODE_BYTES);
    l
}

/// Decodes `bytes` as `format` within [`limits`] and renders the thumbnail. Blocking.
///
/// # Errors
/// 400 `invalid_image` for an image over the limits or one that cannot be decoded.
pub fn render(bytes: &[u8], format: ImageFormat) -> Result<Thumbnail, ApiError> {
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    reader.limits(limits());
    // `into_decoder` checks the dimensions against the limits from the header; the pixel
    // buffer is reserved against `max_alloc` here, before it is allocated (as `decode` does).
    let mut decoder = reader.into_decoder().map_err(invalid_image)?;
    limits()
        .reserve(decoder.total_bytes())
        .map_err(invalid_image)?;
    let orientation = decoder.orientation().map_err(invalid_image)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(invalid_image)?;
    img.apply_orientation(orientation);
    if img.width() > MAX_SIDE || img.height() > MAX_SIDE {
        img = img.thumbnail(MAX_SIDE, MAX_SIDE);
    }
    let rgb = flatten(&img);
    let (width, height) = rgb.dimensions();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode_image(&rgb)
        .map_err(|e| ApiError::internal(format!("thumbnail encoding failed: {e}")))?;
    Ok(Thumbnail {
        bytes: out.into(),
        width,
        height,
    })
}

/// The image as RGB, transparent pixels composed onto white (JPEG has no alpha).
fn flatten(img: &DynamicImage) -> image::RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u16::from(p[3]);
        let mix = |c: u8| ((u16::from(c) * a + 255 * (255 - a)) / 255) as u8;
        image::Rgb([mix(p[0]), mix(p[1]), mix(p[2])])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_pixel(w, h, image::Rgba([10, 20, 30, 128]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// A valid PNG header declaring `w`×`h` with one tiny (truncated) data chunk.
    pub fn bomb_png(w: u32, h: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        out.extend_from_slice(&13u32.to_be_bytes());
        out.extend_from_slice(&ihdr);
        out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn thumbnails_fit_keep_the_aspect_and_are_jpeg() {
        let t = render(&png(1000, 500), ImageFormat::Png).unwrap();
        assert_eq!((t.width, t.height), (320, 160));
        let back = image::load_from_memory(&t.bytes).unwrap();
        assert_eq!(image::guess_format(&t.bytes).unwrap(), ImageFormat::Jpeg);
        assert_eq!((back.width(), back.height()), (320, 160));
        // Small images are not upscaled.
        let t = render(&png(3, 7), ImageFormat::Png).unwrap();
        assert_eq!((t.width, t.height), (3, 7));
    }

    #[test]
    fn bombs_and_garbage_are_invalid_images() {
        for (w, h) in [(100_000, 100_000), (16_385, 1), (16_000, 16_000)] {
            let e = render(&bomb_png(w, h), ImageFormat::Png).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "invalid_image"),
                "{w}x{h}"
            );
        }
        let e = render(b"\x89PNG\r\n\x1a\nnot really", ImageFormat::Png).unwrap_err();
        assert_eq!(e.code, "invalid_image");
        // Within the limits but truncated: still a clean refusal.
        let e = render(&bomb_png(64, 64), ImageFormat::Png).unwrap_err();
        assert_eq!(e.code, "invalid_image");
    }

    #[tokio::test]
    async fn a_full_pool_refuses_with_503_overloaded() {
        let pool = Thumbnailer::new(1, 0);
        let held = pool.admitted.clone().try_acquire_owned().unwrap();
        let e = pool
            .make(Bytes::from(png(2, 2)), "image/png")
            .await
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (503, "overloaded"));
        assert!(e.retry_after.is_some());
        drop(held);
        let t = pool
            .make(Bytes::from(png(2, 2)), "image/png")
            .await
            .unwrap();
        assert_eq!((t.width, t.height), (2, 2));
    }
}
