//! A native stream client frame (`/v1/stream` text frame) of any content: parsing never panics,
//! and an accepted `send` never carries a `local_id` longer than the documented bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spacecast_api::realtime::Command;
use spacecast_api::stream::frames::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(Command::Send {
            correlation: Some(id),
            ..
        }) => assert!(id.to_string().len() <= 256, "local_id bound"),
        Ok(_) => {}
        Err((e, local_id)) => {
            assert!(!e.code.is_empty());
            if let Some(id) = local_id {
                assert!(id.to_string().len() <= 256, "echoed local_id bound");
            }
        }
    }
});
