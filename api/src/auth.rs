//! Authentication: verifying bearer JWTs and minting development tokens.
//!
//! Accepted algorithms are exactly those a key is configured for: HS256 with the shared secret
//! (given, or generated once into `<data-dir>/jwt-secret`), and RS256 / ES256 / EdDSA with the
//! public key PEM. Anything else — `alg: none`, an algorithm with no configured key, a bad
//! signature, a missing or past `exp` — is a 401.
//!
//! Claims: the user id in `sub` or `user_id` (string or number), `username`, `picture` or
//! `profile_picture`, and `exp`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use serde::{Deserialize, Serialize};
use spacecast_engine::model::UserRef;

/// File name of the generated development secret inside the data dir.
const SECRET_FILE: &str = "jwt-secret";
/// Longest user id accepted.
const MAX_USER_ID: usize = 128;

/// Why a token was refused. Always a 401 at the edge.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("Authentication required")]
    Missing,
    #[error("Invalid or expired token")]
    Invalid,
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
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp"]);
        let data = decode::<Claims>(token, key, &validation).map_err(|_| AuthError::Invalid)?;
        let c = data.claims;
        let user_id = id_of(c.sub)
            .or_else(|| id_of(c.user_id))
            .ok_or(AuthError::Invalid)?;
        if user_id.is_empty()
            || user_id.len() > MAX_USER_ID
            || user_id.chars().any(char::is_control)
        {
            return Err(AuthError::Invalid);
        }
        let username = c
            .username
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| user_id.clone());
        let profile_picture = c.picture.or(c.profile_picture).unwrap_or_default();
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
            &serde_json::json!({"user_id": 42, "profile_picture": "p", "exp": 9_999_999_999u64}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let u = auth.verify(&t).unwrap();
        assert_eq!(u.id(), "42");
        assert_eq!(u.profile.username, "42");
        assert_eq!(u.profile.profile_picture, "p");
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
