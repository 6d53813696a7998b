//! Tests of the OT module: the contract's examples, every invalid form, the
//! vectors shared with the JavaScript client, and properties over random
//! texts (beyond the BMP too) and operations.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// The vectors the JavaScript client reads too (clients/js/test/ot.test.ts).
const VECTORS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/ot-vectors.json"));

fn op(value: Value) -> Operation {
    Operation::from_json(&value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// True when `op` is in normal form (see the module documentation).
fn is_normal(op: &Operation) -> bool {
    let c = op.components();
    let zero = c.iter().any(|c| match c {
        Component::Keep(n) | Component::Delete(n) => *n == 0,
        Component::Insert(i) => i.as_str().is_empty() || i.chars() != i.as_str().chars().count(),
    });
    let same_kind = c.windows(2).any(|w| std::mem::discriminant(&w[0]) == std::mem::discriminant(&w[1]));
    let insert_after_delete = c.windows(2).any(|w| matches!(w, [Component::Delete(_), Component::Insert(_)]));
    !zero && !same_kind && !insert_after_delete && !matches!(c.last(), Some(Component::Keep(_)))
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

// ---- the contract's examples and the invalid forms ----------------------------------

#[test]
fn contract_examples() {
    assert_eq!(apply("hello", &op(json!([5, " world"]))).unwrap(), "hello world");
    assert_eq!(apply("hello", &op(json!([{"d": 1}, "J"]))).unwrap(), "Jello");
}

#[test]
fn integer_literals_only() {
    // Forms JavaScript cannot tell from integers (JSON.parse reads them as
    // 5 and 1000), hence not in the shared vectors.
    for text in ["[5.0]", "[1e3]", r#"[{"d": 2.0}]"#, "[18446744073709551616]"] {
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            Operation::from_json(&value),
            Err(OpError::Component { index: 0, problem: ComponentProblem::NotPositiveInteger }),
            "{text}"
        );
    }
}

#[test]
fn errors_name_the_component_and_the_problem() {
    let cases = [
        (json!([1, "a", 0]), OpError::Component { index: 2, problem: ComponentProblem::NotPositiveInteger }),
        (json!(["a\u{0}"]), OpError::Component { index: 0, problem: ComponentProblem::Nul }),
        (json!([1, ""]), OpError::Component { index: 1, problem: ComponentProblem::EmptyInsert }),
        (json!([{"d": 1, "e": 2}]), OpError::Component { index: 0, problem: ComponentProblem::Shape }),
        (json!([MAX_COUNT, 1]), OpError::Component { index: 1, problem: ComponentProblem::CountTooLarge }),
        (json!({"ops": []}), OpError::NotAList),
    ];
    for (value, want) in cases {
        assert_eq!(Operation::from_json(&value), Err(want.clone()), "{value}");
        assert!(!want.is_too_large());
        assert!(want.to_string().starts_with("ops"), "{want}");
    }
    // The largest total that is still accepted.
    assert_eq!(op(json!([MAX_COUNT - 1, {"d": 1}])).base_len() as u64, MAX_COUNT);
}

#[test]
fn length_rules() {
    let refused = apply("hello", &op(json!([2, {"d": 4}]))).unwrap_err();
    assert_eq!(refused, OpError::BaseTooShort { needed: 6, actual: 5 });
    assert_eq!(refused.to_string(), "ops keep and delete 6 characters but the document has 5");
    // A trailing keep is dropped from the components, not from the claim.
    let six = op(json!([6]));
    assert!(six.is_noop());
    assert_eq!(six.base_len(), 6);
    assert!(apply("hello", &six).is_err());
    assert_eq!(apply("hello!", &six).unwrap(), "hello!");
    // Lengths of an operation.
    let o = op(json!([1, "😀😀", {"d": 2}]));
    assert_eq!((o.base_len(), o.inserted_chars(), o.deleted_chars()), (3, 2, 2));
    assert_eq!(o.target_len(5), Some(5));
    assert_eq!(o.target_len(2), None);
    assert_eq!(o.source_len(5), Some(5));
    assert_eq!(op(json!(["abc"])).source_len(2), None);
}

#[test]
fn a_whole_content_update_is_insert_then_delete_all() {
    let replace = Operation::replace_all("hello", "HELLO");
    assert_eq!(replace.to_json(), json!(["HELLO", {"d": 5}]));
    assert_eq!(replace.base_len(), 5);
    assert_eq!(apply("hello", &replace).unwrap(), "HELLO");
    assert_eq!(Operation::replace_all("", "a").to_json(), json!(["a"]));
    assert_eq!(Operation::replace_all("😀", "").to_json(), json!([{"d": 1}]));
}

#[test]
fn apply_within_refuses_a_result_above_the_limit() {
    let grow = op(json!([5, "!!"]));
    assert_eq!(apply_within("hello", &grow, 7).unwrap(), "hello!!");
    let refused = apply_within("hello", &grow, 6).unwrap_err();
    assert_eq!(refused, OpError::TooLarge { max: 6 });
    assert!(refused.is_too_large());
    // Bytes, not characters: "é" is two.
    assert!(apply_within("", &op(json!(["ééé"])), 5).is_err());
    assert_eq!(apply_within("", &op(json!(["éé"])), 4).unwrap(), "éé");
    // A shrinking operation on a text already above the limit is fine as
    // long as the result fits.
    assert_eq!(apply_within("abcdef", &op(json!([{"d": 3}])), 3).unwrap(), "def");
}

#[test]
fn serde_round_trip_writes_the_normal_form() {
    let parsed: Operation = serde_json::from_str(r#"[{"d":1},"J",2,3]"#).unwrap();
    assert_eq!(serde_json::to_string(&parsed).unwrap(), r#"["J",{"d":1}]"#);
    assert_eq!(parsed.to_json(), json!(["J", {"d": 1}]));
    let refused = serde_json::from_str::<Operation>(r#"[0]"#).unwrap_err();
    assert!(refused.to_string().contains("ops[0]"), "{refused}");
}

#[test]
fn transform_over_a_sequence_applies_after_each() {
    // Committed: "abc" -> "Xabc" -> "Xab". Incoming, made on "abc": "abcY".
    let committed = [op(json!(["X"])), op(json!([3, {"d": 1}]))];
    let incoming = op(json!([3, "Y"]));
    let rebased = transform_over(&incoming, &committed, Side::Right);
    assert_eq!(rebased.to_json(), json!([3, "Y"]));
    assert_eq!(apply("Xab", &rebased).unwrap(), "XabY");
    assert_eq!(transform_over(&incoming, [], Side::Right), incoming);
}

#[test]
fn hostile_sizes_stay_linear() {
    // About the worst a 4 MiB frame and a 1 MiB document allow, scaled down
    // for a debug build: many tiny components against a long text. Not
    // timed (speed is the benchmark's business), but a quadratic step here
    // would take minutes instead of well under a second.
    const N: usize = 200_000;
    let text = "é".repeat(2 * N);
    let mut b = Builder::new();
    for _ in 0..N {
        b.delete(1).insert("😀").keep(1);
    }
    let a = b.finish();
    let mut b = Builder::new();
    for _ in 0..N {
        b.keep(1).insert("x").delete(1);
    }
    let b = b.finish();
    let after_a = apply(&text, &a).unwrap();
    let after_b = apply(&text, &b).unwrap();
    let a2 = transform(&a, &b, Side::Left);
    let b2 = transform(&b, &a, Side::Right);
    assert_eq!(apply(&after_b, &a2).unwrap(), apply(&after_a, &b2).unwrap());
    assert_eq!(apply(&text, &compose(&a, &b2)).unwrap(), apply(&after_a, &b2).unwrap());
    // A room's rope takes such an operation in one pass too, not one rope
    // edit per component.
    let mut rope = ropey::Rope::from_str(&text);
    apply_to_rope(&mut rope, &a, usize::MAX).unwrap();
    assert_eq!(rope.to_string(), after_a);
}

// ---- the shared vectors -------------------------------------------------------------------

fn vectors(section: &str) -> Vec<Value> {
    let all: Value = serde_json::from_str(VECTORS).unwrap();
    all[section].as_array().unwrap_or_else(|| panic!("no section {section}")).clone()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[test]
fn vectors_decode() {
    for v in vectors("decode") {
        let o = op(v["ops"].clone());
        assert_eq!(o.to_json(), v["normal"], "{v}");
        assert!(is_normal(&o), "{v}");
    }
    for v in vectors("invalid") {
        let refused = Operation::from_json(&v["ops"]);
        assert!(matches!(refused, Err(OpError::NotAList | OpError::Component { .. })), "{v}: {refused:?}");
    }
}

#[test]
fn vectors_apply() {
    for v in vectors("apply") {
        assert_eq!(apply(s(&v["doc"]), &op(v["ops"].clone())).unwrap(), s(&v["result"]), "{v}");
    }
    for v in vectors("apply_invalid") {
        let refused = apply(s(&v["doc"]), &op(v["ops"].clone()));
        assert!(matches!(refused, Err(OpError::BaseTooShort { .. })), "{v}: {refused:?}");
    }
}

#[test]
fn applying_in_turn_names_the_operation_that_does_not_apply() {
    let ops = [op(json!(["x"])), op(json!([4, "y"])), op(json!([9, "z"]))];
    assert_eq!(apply_in_turn("abc", &ops[..2]).unwrap(), "xabcy");
    let Err((index, e)) = apply_in_turn("abc", &ops) else { panic!("applied") };
    assert_eq!((index, e), (2, OpError::BaseTooShort { needed: 9, actual: 5 }));
}

#[test]
fn vectors_compose() {
    for v in vectors("compose") {
        let (a, b) = (op(v["a"].clone()), op(v["b"].clone()));
        let composed = compose(&a, &b);
        assert_eq!(composed.to_json(), v["composed"], "{v}");
        let doc = s(&v["doc"]);
        assert_eq!(apply(doc, &composed).unwrap(), s(&v["result"]), "{v}");
        assert_eq!(apply(&apply(doc, &a).unwrap(), &b).unwrap(), s(&v["result"]), "{v}");
    }
}

#[test]
fn vectors_transform() {
    for v in vectors("transform") {
        let (left, right) = (op(v["left"].clone()), op(v["right"].clone()));
        let left2 = transform(&left, &right, Side::Left);
        let right2 = transform(&right, &left, Side::Right);
        assert_eq!(left2.to_json(), v["left_after_right"], "{v}");
        assert_eq!(right2.to_json(), v["right_after_left"], "{v}");
        let doc = s(&v["doc"]);
        assert_eq!(apply(&apply(doc, &right).unwrap(), &left2).unwrap(), s(&v["result"]), "{v}");
        assert_eq!(apply(&apply(doc, &left).unwrap(), &right2).unwrap(), s(&v["result"]), "{v}");
    }
}

// ---- properties -----------------------------------------------------------------------------

/// Characters of one, two, three and four UTF-8 bytes (the last two beyond
/// the BMP: surrogate pairs in JavaScript).
const ALPHABET: &[char] = &['a', 'b', 'é', '中', '😀', '𝄞'];

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(ALPHABET), 0..max).prop_map(|v| v.into_iter().collect())
}

/// One step of a random operation; counts are clamped to the text later.
#[derive(Clone, Debug)]
enum Step {
    Keep(usize),
    Delete(usize),
    Insert(String),
}

fn steps() -> impl Strategy<Value = (Vec<Step>, bool)> {
    let step = prop_oneof![
        (1..6usize).prop_map(Step::Keep),
        (1..4usize).prop_map(Step::Delete),
        text(4).prop_map(Step::Insert),
    ];
    (proptest::collection::vec(step, 0..8), any::<bool>())
}

/// The steps fitted to a text of `len` characters, as a raw wire form (not
/// normalised; zero counts and empty inserts left out), with the trailing
/// keep written out when `keep_rest`.
fn wire(len: usize, (steps, keep_rest): &(Vec<Step>, bool)) -> Value {
    let mut left = len;
    let mut items = Vec::new();
    for step in steps {
        match step {
            Step::Keep(n) | Step::Delete(n) => {
                let n = (*n).min(left);
                if n == 0 {
                    continue;
                }
                left -= n;
                items.push(if matches!(step, Step::Keep(_)) { json!(n) } else { json!({"d": n}) });
            }
            Step::Insert(s) if !s.is_empty() => items.push(json!(s)),
            Step::Insert(_) => {}
        }
    }
    if *keep_rest && left > 0 {
        items.push(json!(left));
    }
    Value::Array(items)
}

fn fit(len: usize, steps: &(Vec<Step>, bool)) -> Operation {
    op(wire(len, steps))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// `advance_chars` walks runs of bytes; decoding one character at a
    /// time is the reference.
    #[test]
    fn advancing_by_characters_agrees_with_decoding(doc in text(40), from in 0usize..50, n in 0usize..50) {
        let starts: Vec<usize> = doc.char_indices().map(|(i, _)| i).chain([doc.len()]).collect();
        let from = starts[from % starts.len()];
        let expected = doc[from..].char_indices().map(|(i, _)| from + i).chain([doc.len()]).nth(n);
        prop_assert_eq!(advance_chars(&doc, from, n), expected);
    }

    #[test]
    fn decoding_normalises_and_round_trips(doc in text(12), a in steps()) {
        let raw = wire(chars(&doc), &a);
        let decoded = op(raw.clone());
        prop_assert!(is_normal(&decoded));
        // The normal form does the same as the raw form.
        prop_assert_eq!(apply(&doc, &decoded).unwrap(), apply_raw(&doc, &raw));
        let again = op(decoded.to_json());
        prop_assert_eq!(again.components(), decoded.components());
        let text = serde_json::to_string(&decoded).unwrap();
        let parsed: Operation = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(parsed.components(), decoded.components());
    }

    #[test]
    fn apply_keeps_the_length_rules(doc in text(12), a in steps()) {
        let len = chars(&doc);
        let a = fit(len, &a);
        let out = apply(&doc, &a).unwrap();
        prop_assert_eq!(Some(chars(&out)), a.target_len(len));
        prop_assert_eq!(a.source_len(chars(&out)), Some(len));
        // Every text shorter than the operation's claim is refused.
        if a.base_len() > 0 {
            let short: String = doc.chars().take(a.base_len() - 1).collect();
            prop_assert_eq!(
                apply(&short, &a),
                Err(OpError::BaseTooShort { needed: a.base_len(), actual: a.base_len() - 1 })
            );
        }
    }

    /// A room applies operations to a rope: the same text as a string
    /// gets, the same refusals, and a refused operation changes nothing.
    #[test]
    fn applying_to_a_rope_agrees_with_applying_to_a_string(doc in text(12), a in steps(), fits in any::<bool>(), max in 0usize..60) {
        // Fitted to the text, or to a longer one (refused as too short).
        let a = if fits { fit(chars(&doc), &a) } else { fit(chars(&doc) + 3, &a) };
        let on_string = apply_within(&doc, &a, max);
        // Both ways a rope is changed: edited in place, or rebuilt (an
        // operation of very many components).
        for apply in [rope::edit, rope::rebuild] {
            let mut rope = ropey::Rope::from_str(&doc);
            let on_rope = apply(&mut rope, &a, max);
            match (&on_rope, &on_string) {
                (Ok(()), Ok(text)) => prop_assert_eq!(rope.to_string(), text.clone()),
                // When both apply, an operation too long for its text is
                // refused before its size is looked at; a string notices
                // whichever comes first.
                (Err(OpError::BaseTooShort { .. }), Err(_)) => prop_assert!(a.base_len() > chars(&doc)),
                (Err(e), Err(f)) => prop_assert_eq!(e, f),
                _ => prop_assert!(false, "rope {:?}, string {:?}", on_rope, on_string),
            }
            if on_rope.is_err() {
                prop_assert_eq!(rope.to_string(), doc.clone());
            }
        }
    }

    #[test]
    fn transform_converges(doc in text(12), a in steps(), b in steps()) {
        let len = chars(&doc);
        let (a, b) = (fit(len, &a), fit(len, &b));
        let a2 = transform(&a, &b, Side::Left);
        let b2 = transform(&b, &a, Side::Right);
        prop_assert!(is_normal(&a2) && is_normal(&b2));
        let via_b = apply(&apply(&doc, &b).unwrap(), &a2).unwrap();
        let via_a = apply(&apply(&doc, &a).unwrap(), &b2).unwrap();
        prop_assert_eq!(via_a, via_b);
    }

    #[test]
    fn compose_agrees_with_applying_in_sequence(doc in text(12), a in steps(), b in steps()) {
        let a = fit(chars(&doc), &a);
        let mid = apply(&doc, &a).unwrap();
        let b = fit(chars(&mid), &b);
        let ab = compose(&a, &b);
        prop_assert!(is_normal(&ab));
        prop_assert_eq!(apply(&doc, &ab).unwrap(), apply(&mid, &b).unwrap());
        // And with applying them in turn to a rope (a replay).
        prop_assert_eq!(apply_in_turn(&doc, [&a, &b]).unwrap(), apply(&mid, &b).unwrap());
        // Same lengths as the sequence.
        prop_assert_eq!(ab.target_len(chars(&doc)), b.target_len(chars(&mid)));
    }

    #[test]
    fn the_server_and_a_client_agree_on_a_rebased_operation(
        doc in text(12), a in steps(), b1 in steps(), b2 in steps()
    ) {
        // The server commits b1, b2, then catches `a` (made on `doc`) up
        // over both. The client that sent `a` sees b1 and b2 arrive while
        // `a` is in flight and rewrites both sides one push at a time. They
        // must reach the same text, and the client's rewritten `a` must be
        // exactly what the server applied (the ack's `ops`).
        let len = chars(&doc);
        let a = fit(len, &a);
        let b1 = fit(len, &b1);
        let mid = apply(&doc, &b1).unwrap();
        let b2 = fit(chars(&mid), &b2);
        let rebased = transform_over(&a, [&b1, &b2], Side::Right);
        let server = apply(&apply(&mid, &b2).unwrap(), &rebased).unwrap();

        let mut client = apply(&doc, &a).unwrap();
        let mut pending = a;
        for b in [&b1, &b2] {
            let incoming = transform(b, &pending, Side::Left);
            pending = transform(&pending, b, Side::Right);
            client = apply(&client, &incoming).unwrap();
        }
        prop_assert_eq!(server, client);
        prop_assert_eq!(pending.components(), rebased.components());
    }

    #[test]
    fn the_classic_client_converges(doc in text(12), o in steps(), buf in steps(), s in steps()) {
        // The client sent `o` and typed `buf` since; the server committed
        // `s` before `o`. Client: rewrite `o` and `buf` over `s`, show `s`
        // rewritten over both. Server: apply `s`, then `o` caught up over
        // it, then `buf` as the client sends it after the ack.
        let len = chars(&doc);
        let o = fit(len, &o);
        let after_o = apply(&doc, &o).unwrap();
        let buf = fit(chars(&after_o), &buf);
        let s = fit(len, &s);

        let s_after_o = transform(&s, &o, Side::Left);
        let o_after_s = transform(&o, &s, Side::Right);
        let s_after_buf = transform(&s_after_o, &buf, Side::Left);
        let buf_after_s = transform(&buf, &s_after_o, Side::Right);
        let client = apply(&apply(&after_o, &buf).unwrap(), &s_after_buf).unwrap();

        let server_o = transform_over(&o, [&s], Side::Right);
        prop_assert_eq!(server_o.components(), o_after_s.components());
        let server = apply(&apply(&apply(&doc, &s).unwrap(), &server_o).unwrap(), &buf_after_s).unwrap();
        prop_assert_eq!(client, server);
    }
}

/// Applies a raw (valid, unnormalised) wire form by the contract's words,
/// as an independent check of the normal form.
fn apply_raw(doc: &str, raw: &Value) -> String {
    let chars: Vec<char> = doc.chars().collect();
    let mut at = 0;
    let mut out = String::new();
    for item in raw.as_array().unwrap() {
        match item {
            Value::Number(n) => {
                let n = n.as_u64().unwrap() as usize;
                out.extend(&chars[at..at + n]);
                at += n;
            }
            Value::String(s) => out.push_str(s),
            other => at += other["d"].as_u64().unwrap() as usize,
        }
    }
    out.extend(&chars[at..]);
    out
}
