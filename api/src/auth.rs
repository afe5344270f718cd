//! Authentication: verifying bearer JWTs and minting development tokens.
//!
//! Accepted algorithms are exactly those a key is configured for: HS256 with the shared secret
//! (given, or generated once into `<data-dir>/jwt-secret`), and RS256 / ES256 / EdDSA with the
//! public key PEM. Anything else — `alg: none`, an algorithm with no configured key, a bad
//! signature, a missing or past `exp`, an `nbf` or `iat` in the future (beyond the 30 s leeway)
//! — is a 401 `invalid_token`.
//!
//! Claims: the user id in `sub` or `user_id` (string or number), `username`, `picture` or
//! `profile_picture`, and `exp`. Their bounds are checked here, once, because the profile is
//! copied into every message the user sends: a token whose claims break them is malformed (401
//! `invalid_claims`, naming the claim). See [`check_user_id`], [`normalize_username`] and
//! [`normalize_picture`] for the rules (also in README "Security model").

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use icu_properties::CodePointMapData;
use icu_properties::props::GeneralCategory;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use serde::{Deserialize, Serialize};
use spacecast_engine::model::UserRef;

/// File name of the generated development secret inside the data dir.
const SECRET_FILE: &str = "jwt-secret";
/// Longest user id accepted, in bytes.
pub const MAX_USER_ID: usize = 128;
/// Longest `username` accepted, in characters after trimming.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Longest `picture` URL accepted, in bytes.
pub const MAX_PICTURE_BYTES: usize = 2048;
/// Clock skew tolerated for `exp`, `nbf` and `iat`, in seconds.
const LEEWAY_SECS: u64 = 30;

/// Why a token was refused. Always a 401 at the edge.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("Authentication required")]
    Missing,
    #[error("Invalid or expired token")]
    Invalid,
    /// Correctly signed, but a claim breaks its documented bounds: the issuer is at fault, so
    /// the token is malformed (401 `invalid_claims`), and the message names the claim.
    #[error("Invalid token claim `{claim}`: {reason}")]
    InvalidClaims {
        claim: &'static str,
        reason: &'static str,
    },
}

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Who the token says the caller is.
    pub profile: UserRef,
    /// The token's `exp` (seconds since the Unix epoch): realtime sessions end there unless
    /// refreshed.
    pub exp: u64,
}

impl User {
    pub fn id(&self) -> &str {
        &self.profile.user_id
    }
}

#[derive(Deserialize)]
struct Claims {
    exp: u64,
    /// Issued-at: refused when in the future beyond the leeway (a clock or issuer fault).
    iat: Option<f64>,
    sub: Option<serde_json::Value>,
    user_id: Option<serde_json::Value>,
    username: Option<String>,
    picture: Option<String>,
    profile_picture: Option<String>,
}

fn id_of(v: Option<serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Verifies tokens. Built once at start.
pub struct Authenticator {
    hmac: Option<DecodingKey>,
    public: Option<(DecodingKey, Algorithm)>,
}

impl Authenticator {
    /// From the HS256 secret and/or a public key PEM.
    ///
    /// # Errors
    /// The PEM is not an RSA, EC P-256 or Ed25519 public key.
    pub fn new(secret: Option<&[u8]>, public_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let public = match public_pem {
            None => None,
            Some(pem) => Some(
                DecodingKey::from_rsa_pem(pem)
                    .map(|k| (k, Algorithm::RS256))
                    .or_else(|_| DecodingKey::from_ec_pem(pem).map(|k| (k, Algorithm::ES256)))
                    .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| (k, Algorithm::EdDSA)))
                    .map_err(|_| anyhow::anyhow!("jwt_public_key: not an RSA, EC (P-256) or Ed25519 public key in PEM format"))?,
            ),
        };
        Ok(Authenticator {
            hmac: secret.map(DecodingKey::from_secret),
            public,
        })
    }

    /// Verifies a bearer token and returns its user.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] for anything but a valid, unexpired token signed by a configured key.
    pub fn verify(&self, token: &str) -> Result<User, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Invalid)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hmac.as_ref(),
            alg => self
                .public
                .as_ref()
                .filter(|(_, a)| *a == alg)
                .map(|(k, _)| k),
        }
        .ok_or(AuthError::Invalid)?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        let data = decode::<Claims>(token, key, &validation).map_err(|_| AuthError::Invalid)?;
        let c = data.claims;
        if let Some(iat) = c.iat {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|_| AuthError::Invalid)?
                .as_secs();
            if iat > (now + LEEWAY_SECS) as f64 {
                return Err(AuthError::Invalid);
            }
        }
        let (id_claim, user_id) = match (id_of(c.sub), id_of(c.user_id)) {
            (Some(id), _) => ("sub", id),
            (None, Some(id)) => ("user_id", id),
            (None, None) => return Err(AuthError::Invalid),
        };
        check_user_id(&user_id).map_err(|reason| AuthError::InvalidClaims {
            claim: id_claim,
            reason,
        })?;
        let username = normalize_username(c.username.as_deref())
            .map_err(|reason| AuthError::InvalidClaims {
                claim: "username",
                reason,
            })?
            // Without a username the user id is shown, cut to the username bound (an id may be
            // 128 bytes; found by fuzzing, `api/fuzz/fuzz_targets/jwt_claims.rs`).
            .unwrap_or_else(|| user_id.chars().take(MAX_USERNAME_CHARS).collect());
        let (picture_claim, picture) = match (c.picture, c.profile_picture) {
            (Some(p), _) => ("picture", p),
            (None, Some(p)) => ("profile_picture", p),
            (None, None) => ("picture", String::new()),
        };
        let profile_picture =
            normalize_picture(&picture).map_err(|reason| AuthError::InvalidClaims {
                claim: picture_claim,
                reason,
            })?;
        Ok(User {
            profile: UserRef {
                user_id,
                username,
                profile_picture,
            },
            exp: c.exp,
        })
    }
}

/// The Unicode general category of `c`.
fn category(c: char) -> GeneralCategory {
    CodePointMapData::<GeneralCategory>::new().get(c)
}

/// Control (Cc: C0, DEL, C1 — NUL included), format (Cf: the bidi embeddings, overrides and
/// isolates U+202A–U+202E / U+2066–U+2069, LRM/RLM/ALM, zero-width characters, BOM, tags) and
/// line/paragraph separators: invisible or reordering characters that let one name pass for
/// another.
fn is_invisible_or_control(c: char) -> bool {
    matches!(
        category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// The rules for a user id (`sub` / `user_id`): 1–128 bytes, no whitespace anywhere (so `" "`
/// and `"ada "` are refused rather than silently merged with `"ada"`), no control, format or
/// bidi characters. Ids are compared byte for byte, so they are refused, never normalised.
///
/// # Errors
/// The broken rule, for the 401 message.
pub fn check_user_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("must not be empty");
    }
    if id.len() > MAX_USER_ID {
        return Err("must be at most 128 bytes");
    }
    if id.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace");
    }
    if id.chars().any(is_invisible_or_control) {
        return Err("must not contain control, format or bidirectional characters");
    }
    Ok(())
}

/// The rules for `username`: trimmed; empty means absent (the user id is shown instead); at most
/// 64 characters; no control or bidi/format characters, except ZWNJ (U+200C) and ZWJ (U+200D),
/// which some scripts and emoji sequences need. Refused, not stripped: a name that needs
/// stripping was not meant for display, and stripping would hide the issuer's bug.
///
/// # Errors
/// The broken rule, for the 401 message.
pub fn normalize_username(raw: Option<&str>) -> Result<Option<String>, &'static str> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err("must be at most 64 characters");
    }
    if name
        .chars()
        .any(|c| c != '\u{200C}' && c != '\u{200D}' && is_invisible_or_control(c))
    {
        return Err("must not contain control, format or bidirectional characters");
    }
    Ok(Some(name.to_owned()))
}

/// The rules for `picture` / `profile_picture`: empty (or absent) means no picture; otherwise an
/// absolute `https:` or `http:` URL of at most 2,048 bytes, stored in its normalised
/// (serialised) form so what clients render is exactly what was checked.
///
/// # Errors
/// The broken rule, for the 401 message.
pub fn normalize_picture(raw: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    const TOO_LONG: &str = "must be a URL of at most 2048 bytes";
    if raw.len() > MAX_PICTURE_BYTES {
        return Err(TOO_LONG);
    }
    let url = url::Url::parse(raw).map_err(|_| "must be an absolute https: or http: URL")?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err("must be an absolute https: or http: URL");
    }
    let url = String::from(url);
    if url.len() > MAX_PICTURE_BYTES {
        return Err(TOO_LONG);
    }
    Ok(url)
}

/// Extracts the token from an `Authorization: Bearer …` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The HS256 secret: the configured one, else the one kept in the data dir (created on first use
/// with 256 random bits, readable by the owner only).
///
/// # Errors
/// The data dir cannot be created, read or written.
pub fn load_or_create_secret(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = configured {
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
    std::fs::create_dir_all(data_dir)?;
    let bytes: [u8; 32] = rand::random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&path) {
        Ok(mut f) => {
            f.write_all(secret.as_bytes())?;
            f.sync_all()?;
            Ok(secret.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path)?.trim().as_bytes().to_vec())
        }
        Err(e) => anyhow::bail!("cannot write {}: {e}", path.display()),
    }
}

#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture: Option<&'a str>,
    iat: u64,
    exp: u64,
}

/// Mints an HS256 development token.
///
/// # Errors
/// Only if signing fails (it does not for HMAC).
pub fn mint(
    secret: &[u8],
    user_id: &str,
    username: &str,
    picture: Option<&str>,
    ttl: Duration,
) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = MintClaims {
        sub: user_id,
        username,
        picture,
        iat: now,
        exp: now + ttl.as_secs(),
    };
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_minted_token_verifies_and_carries_the_user() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        let t = mint(
            SECRET,
            "u1",
            "Ada",
            Some("http://p/x.png"),
            Duration::from_secs(60),
        )
        .unwrap();
        let u = auth.verify(&t).unwrap();
        assert_eq!(
            u.profile,
            UserRef {
                user_id: "u1".into(),
                username: "Ada".into(),
                profile_picture: "http://p/x.png".into()
            }
        );
    }

    #[test]
    fn forged_expired_and_unsigned_tokens_are_refused() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        let other = mint(
            b"another-secret-another-secret!!",
            "u1",
            "x",
            None,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(auth.verify(&other), Err(AuthError::Invalid));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u1", "exp": now - 3600}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(auth.verify(&expired), Err(AuthError::Invalid));
        let no_exp = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u1"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(auth.verify(&no_exp), Err(AuthError::Invalid));
        // alg: none — header {"alg":"none","typ":"JWT"}, claims {"sub":"u1","exp":9999999999}, no signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1MSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert_eq!(auth.verify(none), Err(AuthError::Invalid));
        assert_eq!(auth.verify("garbage"), Err(AuthError::Invalid));
    }

    #[test]
    fn user_id_claim_and_numeric_ids_are_accepted() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        let t = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"user_id": 42, "profile_picture": "https://p.example/p", "exp": 9_999_999_999u64}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let u = auth.verify(&t).unwrap();
        assert_eq!(u.id(), "42");
        assert_eq!(u.profile.username, "42");
        assert_eq!(u.profile.profile_picture, "https://p.example/p");
    }

    fn hs(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn a_missing_username_shows_the_user_id_within_the_username_bound() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        let id = "u".repeat(100);
        let u = auth
            .verify(&hs(serde_json::json!({"sub": id, "exp": 9_999_999_999u64})))
            .unwrap();
        assert_eq!(u.id(), id);
        assert_eq!(u.profile.username, "u".repeat(MAX_USERNAME_CHARS));
        let short = auth
            .verify(&hs(
                serde_json::json!({"sub": "ada", "exp": 9_999_999_999u64}),
            ))
            .unwrap();
        assert_eq!(short.profile.username, "ada");
    }

    #[test]
    fn claims_outside_their_bounds_are_invalid_claims_naming_the_claim() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        let exp = 9_999_999_999u64;
        let claim_of = |claims| match auth.verify(&hs(claims)) {
            Err(AuthError::InvalidClaims { claim, .. }) => claim,
            other => panic!("expected InvalidClaims, got {other:?}"),
        };
        use serde_json::json;
        assert_eq!(
            claim_of(json!({"sub": "u", "username": "x".repeat(65), "exp": exp})),
            "username"
        );
        assert_eq!(
            claim_of(json!({"sub": "u", "username": "a\u{202E}b", "exp": exp})),
            "username"
        );
        assert_eq!(
            claim_of(json!({"sub": "u", "picture": "ftp://x/y", "exp": exp})),
            "picture"
        );
        assert_eq!(
            claim_of(
                json!({"sub": "u", "profile_picture": format!("https://x/{}", "a".repeat(2048)), "exp": exp})
            ),
            "profile_picture"
        );
        assert_eq!(claim_of(json!({"sub": "", "exp": exp})), "sub");
        assert_eq!(claim_of(json!({"sub": "u\u{0}", "exp": exp})), "sub");
        assert_eq!(
            claim_of(json!({"user_id": "\u{2067}u", "exp": exp})),
            "user_id"
        );
        assert_eq!(
            claim_of(json!({"user_id": "x".repeat(129), "exp": exp})),
            "user_id"
        );
        let e = ApiErrorLike::from(AuthError::InvalidClaims {
            claim: "username",
            reason: "must be at most 64 characters",
        });
        assert_eq!(
            e.0,
            "Invalid token claim `username`: must be at most 64 characters"
        );
        // At the bounds: accepted, trimmed, normalised.
        let u = auth
            .verify(&hs(json!({"sub": "u", "username": format!(" {} ", "é".repeat(64)), "picture": "HTTPS://P.example", "exp": exp})))
            .unwrap();
        assert_eq!(u.profile.username, "é".repeat(64));
        assert_eq!(u.profile.profile_picture, "https://p.example/");
        // Blank names fall back to the id; ZWJ sequences are names, not tricks.
        let u = auth
            .verify(&hs(json!({"sub": "u", "username": "  ", "exp": exp})))
            .unwrap();
        assert_eq!(u.profile.username, "u");
        assert!(normalize_username(Some("👩\u{200D}💻")).is_ok());
    }

    /// The error's display text, as clients see it in `error`.
    struct ApiErrorLike(String);
    impl From<AuthError> for ApiErrorLike {
        fn from(e: AuthError) -> Self {
            ApiErrorLike(crate::error::ApiError::from(e).message)
        }
    }

    #[test]
    fn nbf_is_honoured_and_a_future_iat_refused_with_the_leeway() {
        let auth = Authenticator::new(Some(SECRET), None).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let exp = now + 3600;
        for claims in [
            serde_json::json!({"sub": "u", "nbf": now + 120, "exp": exp}),
            serde_json::json!({"sub": "u", "iat": now + 120, "exp": exp}),
            serde_json::json!({"sub": "u", "iat": "yesterday", "exp": exp}),
        ] {
            assert_eq!(auth.verify(&hs(claims)), Err(AuthError::Invalid));
        }
        for claims in [
            serde_json::json!({"sub": "u", "nbf": now + 10, "iat": now + 10, "exp": exp}),
            serde_json::json!({"sub": "u", "nbf": now - 10, "iat": now - 10, "exp": exp}),
        ] {
            assert!(auth.verify(&hs(claims)).is_ok());
        }
    }

    /// Issue 6 item 4's measurement: what the sender profile costs in each stored message, with
    /// typical and with maximal claims. The embedded store keeps each message twice (the
    /// message row and its `message_created` event), both as JSON. Run with `--nocapture` to see
    /// the numbers; the assertion keeps the worst case bounded.
    #[test]
    fn sender_profile_cost_per_stored_message() {
        use spacecast_engine::model::{Message, Timestamp};
        let message = |sender: UserRef| Message {
            message_id: uuid::Uuid::now_v7(),
            space_id: uuid::Uuid::now_v7(),
            seq: 12_345,
            sender_id: sender.user_id.clone(),
            content: Some("hello there, how are you today?".into()),
            media_url: None,
            media_type: None,
            word_count: 6,
            sender,
            likes: Some(Vec::new()),
            appreciation_count: 0,
            created_at: Timestamp::now(),
            ..Default::default()
        };
        let typical = UserRef {
            user_id: "0d9f2c1e-5b7a-4c3e-9f10-2a6b8c4d1e77".into(),
            username: "Ada Lovelace".into(),
            profile_picture:
                "https://res.cloudinary.com/demo/image/upload/v1712345678/avatars/ada.jpg".into(),
        };
        let max = UserRef {
            user_id: "u".repeat(MAX_USER_ID),
            // 64 characters of 4-byte UTF-8: the byte worst case.
            username: "😀".repeat(MAX_USERNAME_CHARS),
            profile_picture: format!("https://p.example/{}", "a".repeat(MAX_PICTURE_BYTES - 18)),
        };
        let anonymous = UserRef {
            user_id: typical.user_id.clone(),
            username: String::new(),
            profile_picture: String::new(),
        };
        let size = |u: &UserRef| serde_json::to_vec(&message(u.clone())).unwrap().len();
        let (t, m, a) = (size(&typical), size(&max), size(&anonymous));
        eprintln!(
            "message JSON bytes: typical {t}, max claims {m}, without profile {a}; \
             profile share: typical {}, max {} bytes per copy (x2 copies per message)",
            t - a,
            m - a
        );
        assert!(m - a <= MAX_USER_ID * 2 + 64 * 4 + MAX_PICTURE_BYTES + 64);
    }

    /// Test key pairs made from random bytes at run time (no key material in the repository).
    fn ed25519_pair() -> (String, String) {
        use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
        let sk = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let private = sk.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public = sk
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        (private, public)
    }

    fn p256_pair() -> (String, String) {
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let sk = loop {
            if let Ok(k) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break k;
            }
        };
        let private = sk.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public = sk.public_key().to_public_key_pem(LineEnding::LF).unwrap();
        (private, public)
    }

    fn sign(alg: Algorithm, key: &EncodingKey, sub: &str) -> String {
        let claims = serde_json::json!({"sub": sub, "username": "pk", "exp": 9_999_999_999u64});
        encode(&Header::new(alg), &claims, key).unwrap()
    }

    #[test]
    fn public_keys_verify_their_algorithm_only() {
        for (alg, (private, public)) in [
            (Algorithm::EdDSA, ed25519_pair()),
            (Algorithm::ES256, p256_pair()),
        ] {
            let auth = Authenticator::new(Some(SECRET), Some(public.as_bytes())).unwrap();
            let key = match alg {
                Algorithm::EdDSA => EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
                _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
            };
            assert_eq!(
                auth.verify(&sign(alg, &key, "pk-user")).unwrap().id(),
                "pk-user",
                "{alg:?}"
            );
            // HS256 with the secret still works beside the public key.
            let hs = mint(SECRET, "hs-user", "h", None, Duration::from_secs(60)).unwrap();
            assert_eq!(auth.verify(&hs).unwrap().id(), "hs-user");
            // A token signed by another key of the same kind is refused.
            let (other_private, _) = if alg == Algorithm::EdDSA {
                ed25519_pair()
            } else {
                p256_pair()
            };
            let other = match alg {
                Algorithm::EdDSA => EncodingKey::from_ed_pem(other_private.as_bytes()).unwrap(),
                _ => EncodingKey::from_ec_pem(other_private.as_bytes()).unwrap(),
            };
            assert_eq!(
                auth.verify(&sign(alg, &other, "x")),
                Err(AuthError::Invalid),
                "{alg:?}"
            );
            // A server with only a secret refuses public-key tokens.
            let hmac_only = Authenticator::new(Some(SECRET), None).unwrap();
            assert_eq!(
                hmac_only.verify(&sign(alg, &key, "x")),
                Err(AuthError::Invalid)
            );
        }
        assert!(Authenticator::new(Some(SECRET), Some(b"not a pem")).is_err());
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn the_generated_secret_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_secret(None, dir.path()).unwrap();
        let b = load_or_create_secret(None, dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(
            load_or_create_secret(Some("given-secret-0123"), dir.path()).unwrap(),
            b"given-secret-0123"
        );
    }
}
