//! Token verification: any bytes as a bearer token, and any JSON object as the claims of a token
//! correctly signed with the server's secret. Verification never panics; whatever it accepts has a
//! user id and profile within the documented bounds.
#![no_main]

use std::sync::OnceLock;

use jsonwebtoken::{EncodingKey, Header, encode};
use libfuzzer_sys::fuzz_target;
use spacecast_api::auth::Authenticator;

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef";

fn auth() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| Authenticator::new(Some(SECRET), None).expect("authenticator"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // 1. The raw text as a token.
    let _ = auth().verify(text.trim());
    // 2. The text as claims, signed with the right key: only the claim checks stand between it
    //    and acceptance.
    let Ok(claims @ serde_json::Value::Object(_)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return;
    };
    let Ok(token) = encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET)) else {
        return;
    };
    if let Ok(user) = auth().verify(&token) {
        let p = &user.profile;
        assert!(!p.user_id.is_empty() && p.user_id.len() <= 128, "user id bound");
        assert!(p.user_id.trim() == p.user_id, "user id is trimmed");
        assert!(!p.user_id.chars().any(char::is_control), "no control characters");
        assert!(p.username.chars().count() <= 64, "username bound");
        assert!(p.profile_picture.len() <= 2048, "picture bound");
    }
});
