//! Editors that send random text operations with lagging bases, and what
//! each of them saw: the document at every version it integrated, from
//! acks and pushes that must come in version order (the classic client
//! algorithm's assumption). Shared by the single-engine, two-engine and
//! cluster tests.

use std::collections::{HashMap, HashSet};

use huddle_actors::ot::{apply, Operation};
use serde_json::{json, Value};

use crate::common::Client;

/// One editor's copy of the document: the text at every version it has
/// integrated, from acks and pushes, which must come in version order.
pub struct View {
    pub start: i64,
    pub texts: Vec<String>,
    pub ops: Vec<Value>,
}

impl View {
    pub fn new(content: &str, version: i64) -> View {
        View { start: version, texts: vec![content.to_owned()], ops: Vec::new() }
    }

    pub fn version(&self) -> i64 {
        self.start + self.ops.len() as i64
    }

    pub fn text(&self) -> &str {
        self.texts.last().expect("a text")
    }

    pub fn text_at(&self, version: i64) -> &str {
        &self.texts[(version - self.start) as usize]
    }

    /// A change (an ack, a `documents:op` push, a recovered change).
    pub fn integrate(&mut self, version: &Value, ops: &Value) {
        assert_eq!(version.as_i64(), Some(self.version() + 1), "versions arrive in order, without gaps");
        let op = Operation::from_json(ops).unwrap_or_else(|e| panic!("{ops}: {e}"));
        let next = apply(self.text(), &op).unwrap_or_else(|e| panic!("version {version}: {ops} on {:?}: {e}", self.text()));
        self.texts.push(next);
        self.ops.push(ops.clone());
    }

    /// A `documents:updated` push: kept as the operation the history
    /// records for it (the one that replaces the whole content).
    pub fn replace(&mut self, document: &Value) {
        let content = document["content"].as_str().expect("content");
        let ops = Operation::replace_all(self.text(), content).to_json();
        self.integrate(&document["version"], &ops);
    }

    /// Any frame about the document: integrated if it is a version.
    pub fn take(&mut self, frame: &Value, room: &str) {
        match frame["event"].as_str() {
            Some("documents:op") if frame["room"] == room => self.integrate(&frame["data"]["version"], &frame["data"]["ops"]),
            Some("documents:updated") if frame["room"] == room => self.replace(&frame["data"]["document"]),
            _ => {}
        }
    }
}

/// A random operation on `text`: a few inserts and deletes at increasing
/// positions, some of them beyond the BMP.
pub fn random_op(rng: &mut fastrand::Rng, text: &str) -> Value {
    const WORDS: [&str; 6] = ["a", "bc", "é", "🙂", "xyz ", "\n"];
    let len = text.chars().count();
    let (mut ops, mut at) = (Vec::new(), 0);
    for _ in 0..rng.usize(1..=3) {
        let skip = rng.usize(0..=len - at);
        if skip > 0 {
            ops.push(json!(skip));
            at += skip;
        }
        if at < len && rng.bool() {
            let n = rng.usize(1..=(len - at).min(3));
            ops.push(json!({"d": n}));
            at += n;
        } else {
            ops.push(json!(WORDS[rng.usize(..WORDS.len())]));
        }
    }
    Value::Array(ops)
}

/// What an editor does with `SERVER_BUSY` (nothing was stored; safe to
/// send again).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnBusy {
    /// Sends the operation again, as it was (two engines without a
    /// cluster between them: one can keep committing first).
    Retry,
    /// Fails the test.
    Fail,
}

/// Sends `count` random operations with up to four in flight, each on a
/// version up to five behind the newest it has, and integrates everything
/// until the document reaches `total`. Returns its view.
pub async fn edit_randomly(mut c: Client, doc: String, seed: u64, count: usize, total: i64, on_busy: OnBusy) -> (Client, View) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut sent_ops = HashMap::new();
    let joined = c.ok("documents:join", json!({"document_id": doc})).await;
    let mut view = View::new(joined["document"]["content"].as_str().unwrap(), joined["document"]["version"].as_i64().unwrap());
    let room = format!("document:{doc}");
    let (mut sent, mut in_flight) = (0, HashSet::new());
    while sent < count || !in_flight.is_empty() || view.version() < total {
        if sent < count && in_flight.len() < 4 {
            let base = view.version() - rng.i64(0..=5.min(view.version() - view.start));
            let ops = random_op(&mut rng, view.text_at(base));
            let data = json!({"document_id": doc, "base_version": base, "ops": ops, "op_id": format!("{seed}-{sent}")});
            let r = c.send_request("documents:op", data.clone()).await;
            in_flight.insert(r);
            sent_ops.insert(r, data);
            sent += 1;
            continue;
        }
        let f = c.next().await;
        match f["event"].as_str() {
            Some("ack") => {
                assert!(in_flight.remove(&f["ref"].as_u64().unwrap()), "{f}");
                view.integrate(&f["data"]["version"], &f["data"]["ops"]);
            }
            Some("error") if f["data"]["code"] == "SERVER_BUSY" && on_busy == OnBusy::Retry => {
                let r = f["ref"].as_u64().unwrap();
                assert!(in_flight.remove(&r), "{f}");
                let data = sent_ops[&r].clone();
                let again = c.send_request("documents:op", data.clone()).await;
                in_flight.insert(again);
                sent_ops.insert(again, data);
            }
            Some("error") => panic!("editor {seed}: {f}"),
            _ => view.take(&f, &room),
        }
    }
    (c, view)
}

/// The whole history, paged.
pub async fn history(c: &mut Client, doc: &str) -> Vec<Value> {
    let mut changes = Vec::new();
    loop {
        let page = c.ok("documents:history", json!({"document_id": doc, "after_version": changes.len(), "limit": 250})).await;
        changes.extend(page["changes"].as_array().unwrap().iter().cloned());
        if page["has_more"] == false {
            return changes;
        }
    }
}

/// The document rebuilt from its history: the view every editor's must be
/// a part of.
pub fn replay(content: &str, changes: &[Value]) -> View {
    let mut view = View::new(content, 0);
    for c in changes {
        view.integrate(&c["version"], &c["ops"]);
    }
    view
}
