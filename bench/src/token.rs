//! Tokens for simulated users: HS256 JWTs signed with the server's secret,
//! exactly what `huddle token` would print.

use serde::Serialize;

/// Long enough for any run: a token expiring mid-run would close its
/// connection with 4001 and fail the run.
const TOKEN_TTL_S: u64 = 24 * 3600;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    name: &'a str,
}

pub fn mint(secret: &str, sub: &str) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("clock before 1970: {e}"))?
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims { sub, exp: now + TOKEN_TTL_S, name: sub },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| format!("cannot sign a token: {e}"))
}

#[cfg(test)]
mod tests {
    /// jsonwebtoken compiles without a crypto backend and then panics on
    /// first use: this round trip is the guard.
    #[test]
    fn tokens_round_trip() {
        let t = super::mint("s3cret", "alice").unwrap();
        let key = jsonwebtoken::DecodingKey::from_secret(b"s3cret");
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &key,
            &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "alice");
    }
}
