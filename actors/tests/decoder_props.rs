//! Property tests for the frame decoder: whatever bytes arrive, decoding
//! never panics and ends in a typed request or an `INVALID_INPUT` /
//! `PAYLOAD_TOO_LARGE` error.

use huddle_actors::protocol::{decode, DecodeLimits, ErrorCode};
use proptest::prelude::*;
use serde_json::{json, Value};

const LIMITS: DecodeLimits = DecodeLimits { max_document_bytes: 64, max_message_chars: 16, max_awareness_bytes: 64 };

const EVENTS: &[&str] = &[
    "auth", "auth:refresh", "ping", "documents:create", "documents:join", "documents:update",
    "documents:leave", "documents:share", "chat:create", "chat:join", "chat:message",
    "chat:history", "chat:leave", "nope", "",
];

const FIELDS: &[&str] = &[
    "token", "document_id", "chat_id", "user_id", "content", "title", "version", "role",
    "private", "members", "since_seq", "before_seq", "limit", "client_msg_id",
];

fn check(text: &str) {
    match decode(text, &LIMITS) {
        Ok(_) => {}
        Err(e) => assert!(
            matches!(e.error.code, ErrorCode::InvalidInput | ErrorCode::PayloadTooLarge),
            "{text:?} gave {:?}",
            e.error.code
        ),
    }
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        "[A-Za-z0-9_.:-]{0,130}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(prop::sample::select(FIELDS).prop_map(str::to_owned), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Envelopes with known events and plausible-but-random data.
fn envelope() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(EVENTS),
        prop::collection::btree_map(prop::sample::select(FIELDS).prop_map(str::to_owned), json_value(), 0..8),
        prop::option::of(json_value()),
    )
        .prop_map(|(event, data, r)| {
            let mut e = json!({"event": event, "data": Value::Object(data.into_iter().collect())});
            if let Some(r) = r {
                e["ref"] = r;
            }
            e
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check(&text);
    }

    #[test]
    fn arbitrary_bytes_as_lossy_text_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_envelopes_decode_or_fail_cleanly(e in envelope()) {
        check(&e.to_string());
    }

    #[test]
    fn envelopes_with_duplicate_keys(e in envelope(), extra in json_value()) {
        let text = e.to_string();
        let doubled = format!("{{\"data\":{},{}", extra, &text[1..]);
        check(&doubled);
    }
}

#[test]
fn deep_nesting_and_huge_numbers() {
    for depth in [10, 127, 128, 129, 1000, 100_000] {
        check(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
        check(&format!(r#"{{"event":"ping","data":{}{}}}"#, "{\"a\":".repeat(depth), "}".repeat(depth)));
    }
    for n in ["1e400", "-1e400", "18446744073709551616", "123456789012345678901234567890", "1.7976931348623157e309"] {
        check(&format!(r#"{{"event":"documents:update","data":{{"document_id":"d","content":"","version":{n}}},"ref":{n}}}"#));
    }
}
