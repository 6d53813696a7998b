//! JWT: checking the tokens clients present, and minting tokens for
//! `huddle token` and the demo. HS256 with a shared secret by default;
//! RS256 / ES256 with a public key when configured. A token whose header
//! names any other algorithm (`none` included) is refused.

use std::path::Path;

use huddle_actors::auth::{AuthFailure, Identity, TokenVerifier};
use huddle_actors::ids::UserId;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Which algorithm tokens must use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum JwtAlgorithm {
    #[value(name = "HS256")]
    Hs256,
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
}

impl JwtAlgorithm {
    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// Everything token checking depends on.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub algorithm: JwtAlgorithm,
    /// The HS256 secret (also used to mint tokens).
    pub secret: Option<String>,
    /// PEM public key for RS256 / ES256.
    pub public_key_pem: Option<Vec<u8>>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_s: u64,
}

/// Longest `name` claim, in characters (PROTOCOL.md, "Edge cases"). The
/// name is pushed to every member of every room the user joins, so it is
/// bounded like `sub`.
pub const MAX_NAME_CHARS: usize = 128;
/// Latest `exp` accepted: 9999-12-31T23:59:59Z, the last second an RFC 3339
/// time (four-digit year) can say. Later, `connect.expires_at` could not be
/// written as one.
pub const MAX_EXP: i64 = 253_402_300_799;

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    name: Option<String>,
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Result<JwtVerifier, String> {
        let key = match config.algorithm {
            JwtAlgorithm::Hs256 => {
                let secret = config.secret.as_deref().ok_or("HS256 needs HUDDLE_JWT_SECRET")?;
                DecodingKey::from_secret(secret.as_bytes())
            }
            JwtAlgorithm::Rs256 => {
                let pem = config.public_key_pem.as_deref().ok_or("RS256 needs HUDDLE_JWT_PUBLIC_KEY")?;
                DecodingKey::from_rsa_pem(pem).map_err(|e| format!("bad RS256 public key: {e}"))?
            }
            JwtAlgorithm::Es256 => {
                let pem = config.public_key_pem.as_deref().ok_or("ES256 needs HUDDLE_JWT_PUBLIC_KEY")?;
                DecodingKey::from_ec_pem(pem).map_err(|e| format!("bad ES256 public key: {e}"))?
            }
        };
        let mut validation = Validation::new(config.algorithm.algorithm());
        // A configured issuer or audience must also be present, not just
        // right when present.
        let mut required = vec!["exp", "sub"];
        required.extend(config.issuer.as_ref().map(|_| "iss"));
        required.extend(config.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        validation.leeway = config.leeway_s;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        match &config.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(JwtVerifier { key, validation })
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify(&self, token: &str) -> Result<Identity, AuthFailure> {
        let data = decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthFailure::Expired,
            ErrorKind::ImmatureSignature => AuthFailure::Invalid("not valid yet (nbf)".into()),
            ErrorKind::InvalidSignature => AuthFailure::Invalid("bad signature".into()),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
                AuthFailure::Invalid("algorithm not accepted".into())
            }
            ErrorKind::InvalidIssuer => AuthFailure::Invalid("wrong issuer".into()),
            ErrorKind::InvalidAudience => AuthFailure::Invalid("wrong audience".into()),
            ErrorKind::MissingRequiredClaim(c) => AuthFailure::Invalid(format!("missing claim {c}")),
            ErrorKind::InvalidClaimFormat(c) => AuthFailure::Invalid(format!("malformed claim {c}")),
            _ => AuthFailure::Invalid("malformed token".into()),
        })?;
        let Claims { sub, exp, name } = data.claims;
        let user_id = UserId::parse(&sub).map_err(|e| AuthFailure::Invalid(format!("sub {e}")))?;
        if let Some(name) = &name {
            check_name(name).map_err(AuthFailure::Invalid)?;
        }
        check_exp(exp).map_err(AuthFailure::Invalid)?;
        Ok(Identity { user_id, name, expires_at: exp })
    }
}

/// The rules a `name` claim follows, for tokens checked and minted alike.
fn check_name(name: &str) -> Result<(), String> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name must be at most {MAX_NAME_CHARS} characters"));
    }
    if name.contains('\0') {
        return Err("name must not contain U+0000 (NUL)".into());
    }
    Ok(())
}

fn check_exp(exp: i64) -> Result<(), String> {
    if exp > MAX_EXP {
        return Err("exp must not be after 9999-12-31T23:59:59Z".into());
    }
    Ok(())
}

#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Mints an HS256 token valid for `ttl_s` seconds.
pub fn mint(config: &JwtConfig, sub: &str, name: Option<&str>, ttl_s: i64) -> Result<String, String> {
    let secret = match (config.algorithm, &config.secret) {
        (JwtAlgorithm::Hs256, Some(s)) => s,
        _ => return Err("only HS256 tokens can be minted here (the server holds no private key)".into()),
    };
    // What the server would refuse is not minted.
    UserId::parse(sub).map_err(|e| format!("sub {e}"))?;
    if let Some(name) = name {
        check_name(name)?;
    }
    let now = chrono::Utc::now().timestamp();
    let exp = now
        .checked_add(ttl_s)
        .filter(|exp| check_exp(*exp).is_ok())
        .ok_or("the ttl is too long: exp would be after 9999-12-31T23:59:59Z")?;
    let claims = MintClaims {
        sub,
        exp,
        iat: now,
        name,
        iss: config.issuer.as_deref(),
        aud: config.audience.as_deref(),
    };
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| format!("cannot sign the token: {e}"))
}

/// Reads a PEM public key file.
pub fn read_public_key(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> JwtConfig {
        JwtConfig {
            algorithm: JwtAlgorithm::Hs256,
            secret: Some("s3cret".into()),
            public_key_pem: None,
            issuer: None,
            audience: None,
            leeway_s: 5,
        }
    }

    // jsonwebtoken compiles without a crypto backend and then panics at the
    // first use: this round trip keeps the backend feature honest.
    #[test]
    fn minted_tokens_verify() {
        let c = config();
        let token = mint(&c, "alice", Some("Alice"), 60).unwrap();
        let id = JwtVerifier::new(&c).unwrap().verify(&token).unwrap();
        assert_eq!(id.user_id.as_str(), "alice");
        assert_eq!(id.name.as_deref(), Some("Alice"));
    }

    #[test]
    fn expired_and_forged_tokens_are_told_apart() {
        let c = config();
        let v = JwtVerifier::new(&c).unwrap();
        assert_eq!(v.verify(&mint(&c, "a", None, -60).unwrap()), Err(AuthFailure::Expired));
        let other = JwtConfig { secret: Some("other".into()), ..config() };
        assert!(matches!(v.verify(&mint(&other, "a", None, 60).unwrap()), Err(AuthFailure::Invalid(_))));
        assert!(matches!(v.verify("not.a.jwt"), Err(AuthFailure::Invalid(_))));
    }

    #[test]
    fn minting_refuses_what_verifying_would() {
        let c = config();
        assert!(mint(&c, "a", Some(&"n".repeat(MAX_NAME_CHARS)), 60).is_ok());
        assert!(mint(&c, "a", Some(&"n".repeat(MAX_NAME_CHARS + 1)), 60).unwrap_err().contains("name"));
        assert!(mint(&c, "a", Some("a\0b"), 60).unwrap_err().contains("U+0000"));
        assert!(mint(&c, "a\0b", None, 60).unwrap_err().contains("U+0000"));
        assert!(mint(&c, "a", None, i64::MAX).unwrap_err().contains("ttl"));
        assert!(mint(&c, "a", None, MAX_EXP).unwrap_err().contains("ttl"));
    }
}
