//! The JSON form of an operation (docs/protocol.md, "Operations"): a list of
//! `n` (keep), `"s"` (insert) and `{"d": n}` (delete). Decoding validates
//! every component, refuses U+0000 in inserted text, and normalises;
//! serialising writes the normal form.

use serde::de::Error as _;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

use super::{Builder, Component, ComponentProblem, OpError, Operation, MAX_COUNT};

impl Operation {
    /// Decodes the `ops` of a request, already parsed as JSON. O(size of
    /// `value`); the first problem found is returned, naming its component.
    pub fn from_json(value: &Value) -> Result<Operation, OpError> {
        let Value::Array(items) = value else { return Err(OpError::NotAList) };
        let mut decoder = Decoder::default();
        for (index, item) in items.iter().enumerate() {
            decoder
                .component(item)
                .map_err(|problem| OpError::Component { index, problem })?;
        }
        Ok(decoder.builder.finish())
    }

    /// The JSON form (normalised).
    pub fn to_json(&self) -> Value {
        let items = self
            .components()
            .iter()
            .map(|c| match c {
                Component::Keep(n) => Value::from(*n),
                Component::Insert(insert) => Value::from(insert.as_str()),
                Component::Delete(n) => {
                    let mut m = Map::new();
                    m.insert("d".to_owned(), Value::from(*n));
                    Value::Object(m)
                }
            })
            .collect();
        Value::Array(items)
    }
}

/// Validates components one by one into a [`Builder`].
#[derive(Default)]
struct Decoder {
    builder: Builder,
    /// Characters kept or deleted so far, bounded by [`MAX_COUNT`] so that
    /// no later sum overflows.
    total: u64,
}

impl Decoder {
    fn component(&mut self, item: &Value) -> Result<(), ComponentProblem> {
        match item {
            Value::Number(n) => {
                let n = self.count(n)?;
                self.builder.keep(n);
            }
            Value::String(s) => {
                if s.is_empty() {
                    return Err(ComponentProblem::EmptyInsert);
                }
                if s.contains('\0') {
                    return Err(ComponentProblem::Nul);
                }
                self.builder.insert(s);
            }
            Value::Object(m) => match (m.len(), m.get("d")) {
                (1, Some(Value::Number(n))) => {
                    let n = self.count(n)?;
                    self.builder.delete(n);
                }
                (1, Some(_)) => return Err(ComponentProblem::NotPositiveInteger),
                _ => return Err(ComponentProblem::Shape),
            },
            _ => return Err(ComponentProblem::Shape),
        }
        Ok(())
    }

    fn count(&mut self, n: &Number) -> Result<usize, ComponentProblem> {
        // `is_f64` is true for `5.0` and `1e3`, which are not integer literals.
        if n.is_f64() {
            return Err(ComponentProblem::NotPositiveInteger);
        }
        let n = match n.as_u64() {
            Some(n) if n > 0 => n,
            _ => return Err(ComponentProblem::NotPositiveInteger),
        };
        self.total = self.total.saturating_add(n);
        if self.total > MAX_COUNT {
            return Err(ComponentProblem::CountTooLarge);
        }
        usize::try_from(n).map_err(|_| ComponentProblem::CountTooLarge)
    }
}

impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.components().len()))?;
        for component in self.components() {
            match component {
                Component::Keep(n) => seq.serialize_element(n)?,
                Component::Insert(insert) => seq.serialize_element(insert.as_str())?,
                Component::Delete(n) => seq.serialize_element(&Delete(*n))?,
            }
        }
        seq.end()
    }
}

struct Delete(usize);

impl Serialize for Delete {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("d", &self.0)?;
        map.end()
    }
}

/// Reads the JSON form through [`Operation::from_json`] (stored history,
/// test vectors); the typed error becomes the deserializer's message.
impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Operation::from_json(&value).map_err(D::Error::custom)
    }
}
