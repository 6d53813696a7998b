//! Parsing a frame into a JSON tree ([`serde_json::Value`]) with a bound on
//! how many values the tree may hold.
//!
//! A tree costs far more memory than its text: a number is 32 bytes, an
//! object with one member (a delete, `{"d":1}`, 7 characters) about 650,
//! for its map's first node. Unbounded, one frame of the largest size
//! made of deletes became a tree of about 350 MB and a tenth of a second
//! of a connection thread that every other connection on it waits for.
//! Counting values as they are parsed stops such a frame at the bound,
//! before the rest is read: [`MAX_FRAME_VALUES`] values cost at most about
//! 32 MB (half of them objects of one member each), and no real request
//! comes near it.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::{Map, Number, Value};

/// JSON values one frame may hold: every number, string, boolean, null,
/// array and object counts one, nested ones too (an operation of 50,000
/// deletes is 100,001 values: each delete is an object and its number).
pub const MAX_FRAME_VALUES: usize = 100_000;

/// Why a frame was not parsed.
#[derive(Debug)]
pub enum TreeError {
    Json(serde_json::Error),
    /// More values than the bound, which it names.
    TooManyValues(usize),
}

/// Parses `text` as one JSON value of at most `max_values` values.
pub fn parse(text: &str, max_values: usize) -> Result<Value, TreeError> {
    let counter = Counter { left: Cell::new(max_values), ran_out: Cell::new(false) };
    let mut parser = serde_json::Deserializer::from_str(text);
    let parsed = Counted(&counter).deserialize(&mut parser).and_then(|value| parser.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        // The parser wraps the visitor's error in its own (with a
        // position); the counter says which it was.
        Err(_) if counter.ran_out.get() => Err(TreeError::TooManyValues(max_values)),
        Err(e) => Err(TreeError::Json(e)),
    }
}

struct Counter {
    left: Cell<usize>,
    ran_out: Cell<bool>,
}

/// Builds a value, counting it against the values left.
#[derive(Clone, Copy)]
struct Counted<'a>(&'a Counter);

impl Counted<'_> {
    fn take<E: serde::de::Error>(self) -> Result<(), E> {
        match self.0.left.get() {
            0 => {
                self.0.ran_out.set(true);
                Err(E::custom("too many values"))
            }
            n => {
                self.0.left.set(n - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Counted<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.take()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::Json(e) => e.fmt(f),
            TreeError::TooManyValues(max) => write!(f, "the frame holds more than {max} JSON values"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_as_serde_json_does_within_the_bound() {
        for text in [
            r#"{"event":"documents:op","data":{"ops":[3,"héllo 🎉",{"d":2}],"x":[true,false,null,-1,1.5,1e300]},"ref":7}"#,
            r#"{"a":1,"a":2}"#,
            "[]",
            "{}",
            r#""\u0000""#,
        ] {
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse(text, 100).unwrap(), expected, "{text}");
        }
        // Exactly at the bound: an array and its three numbers.
        assert_eq!(parse("[1,2,3]", 4).unwrap(), json!([1, 2, 3]));
        assert!(matches!(parse("[1,2,3]", 3), Err(TreeError::TooManyValues(_))));
        assert!(matches!(parse(r#"{"d":1}"#, 1), Err(TreeError::TooManyValues(_))));
    }

    #[test]
    fn syntax_errors_stay_syntax_errors() {
        for text in ["", "{", "[1,]", "{} {}", "nul", r#"{"a" 1}"#] {
            let Err(TreeError::Json(e)) = parse(text, 100) else { panic!("{text}") };
            let expected = serde_json::from_str::<Value>(text).unwrap_err();
            assert_eq!(e.to_string(), expected.to_string(), "{text}");
        }
    }

    #[test]
    fn a_frame_of_deletes_stops_at_the_bound() {
        let deletes = vec![r#"{"d":1}"#; MAX_FRAME_VALUES];
        let text = format!(r#"{{"event":"documents:op","data":{{"ops":[{}]}}}}"#, deletes.join(","));
        assert!(matches!(parse(&text, MAX_FRAME_VALUES), Err(TreeError::TooManyValues(_))));
        // The envelope, its event, data and ops are four values, each
        // delete two: 49,998 deletes are the bound exactly.
        let fits = (MAX_FRAME_VALUES - 4) / 2;
        let frame = |n: usize| format!(r#"{{"event":"documents:op","data":{{"ops":[{}]}}}}"#, deletes[..n].join(","));
        assert!(parse(&frame(fits), MAX_FRAME_VALUES).is_ok());
        assert!(matches!(parse(&frame(fits + 1), MAX_FRAME_VALUES), Err(TreeError::TooManyValues(_))));
    }
}
