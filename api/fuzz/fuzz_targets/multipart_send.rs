//! The Space7 multipart send body (`POST /api/messages/{space}`), of any bytes and cut into
//! chunks at any points: parsing never panics, never holds more media than its limit, and its
//! refusals are 400 or 413 with a stable code.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spacecast_api::routes::messages::parse_multipart;

const CT: &str = "multipart/form-data; boundary=XBOUNDARYX";
const MAX_MEDIA: usize = 4096;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so chunk boundaries fall anywhere.
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).max(1);
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(cut)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    match rt.block_on(parse_multipart(CT, futures::stream::iter(chunks), MAX_MEDIA)) {
        Ok(draft) => {
            assert!(draft.media.as_ref().is_none_or(|m| m.len() <= MAX_MEDIA));
            assert!(draft.content.as_ref().is_none_or(|c| c.len() <= 64 * 1024));
        }
        Err(e) => {
            assert!(matches!(e.status.as_u16(), 400 | 413), "{e:?}");
            assert!(!e.code.is_empty());
        }
    }
});
