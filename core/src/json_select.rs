//! Reads the values at a few JSON pointers in one pass over a body, skipping everything else
//! without building a `Value` tree: the per-event cost in a proxy is mostly JSON, and a rule
//! needs only a handful of fields from a body of any size.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// What stands at a pointer.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Num(Number),
    Bool(bool),
    Null,
    /// An object or array: not a usable field value.
    Composite,
}

/// RFC 6901 reference tokens of a pointer (`/a~1b/0` → `["a/b", "0"]`).
pub fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// The values at `pointers` (each already split into tokens), in the same order; None where
/// nothing stands. Err when the body is not one valid JSON document.
pub fn select(
    body: &[u8],
    pointers: &[Vec<String>],
) -> Result<Vec<Option<Scalar>>, serde_json::Error> {
    let mut out = alloc::vec![None; pointers.len()];
    let live: Vec<usize> = (0..pointers.len()).collect();
    let mut de = serde_json::Deserializer::from_slice(body);
    Node {
        pointers,
        live: &live,
        depth: 0,
        out: &mut out,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(out)
}

/// One position in the document: `live` are the pointers whose first `depth` tokens led here.
struct Node<'p, 'o> {
    pointers: &'p [Vec<String>],
    live: &'p [usize],
    depth: usize,
    out: &'o mut [Option<Scalar>],
}

impl Node<'_, '_> {
    fn set_here(&mut self, v: &Scalar) {
        for &i in self.live {
            if let (true, Some(slot)) = (self.pointers[i].len() == self.depth, self.out.get_mut(i))
            {
                *slot = Some(v.clone());
            }
        }
    }

    /// Pointers that continue into the child named `token`.
    fn children(&self, token: &str) -> Vec<usize> {
        self.live
            .iter()
            .copied()
            .filter(|&i| self.pointers[i].get(self.depth).is_some_and(|t| t == token))
            .collect()
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.set_here(&Scalar::Bool(v));
        Ok(())
    }
    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.set_here(&Scalar::Num(Number::from(v)));
        Ok(())
    }
    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.set_here(&Scalar::Num(Number::from(v)));
        Ok(())
    }
    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.set_here(&Number::from_f64(v).map_or(Scalar::Null, Scalar::Num));
        Ok(())
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        if self
            .live
            .iter()
            .any(|&i| self.pointers[i].len() == self.depth)
        {
            self.set_here(&Scalar::Str(String::from(v)));
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.set_here(&Scalar::Null);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.set_here(&Scalar::Composite);
        while let Some(next) = map.next_key_seed(KeyMatch { node: &self })? {
            match next {
                Some(live) => map.next_value_seed(Node {
                    pointers: self.pointers,
                    live: &live,
                    depth: self.depth + 1,
                    out: &mut *self.out,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.set_here(&Scalar::Composite);
        let mut index = 0usize;
        loop {
            let mut buf = itoa_buf(index);
            let live = self.children(buf.as_str());
            buf.clear();
            let more = if live.is_empty() {
                seq.next_element::<IgnoredAny>()?.is_some()
            } else {
                seq.next_element_seed(Node {
                    pointers: self.pointers,
                    live: &live,
                    depth: self.depth + 1,
                    out: &mut *self.out,
                })?
                .is_some()
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }
}

fn itoa_buf(n: usize) -> String {
    use core::fmt::Write;
    let mut s = String::with_capacity(8);
    let _ = write!(s, "{n}");
    s
}

/// Reads one object key and answers which pointers go on below it (None: skip the value),
/// without allocating the key.
struct KeyMatch<'n, 'p, 'o> {
    node: &'n Node<'p, 'o>,
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_, '_, '_> {
    type Value = Option<Vec<usize>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_, '_, '_> {
    type Value = Option<Vec<usize>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        let live = self.node.children(key);
        Ok((!live.is_empty()).then_some(live))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sel(body: &str, ptrs: &[&str]) -> Vec<Option<Scalar>> {
        let p: Vec<Vec<String>> = ptrs.iter().map(|p| tokens(p)).collect();
        select(body.as_bytes(), &p).unwrap()
    }

    #[test]
    fn agrees_with_value_pointer() {
        let body = r#"{"order":{"id":"A-1","total":12.5,"n":3,"neg":-2,"ok":true,"none":null,"items":[{"sku":"x"},{"sku":"y"}]},"a/b":{"~":"t"},"":1}"#;
        let ptrs = [
            "/order/id",
            "/order/total",
            "/order/n",
            "/order/neg",
            "/order/ok",
            "/order/none",
            "/order/items/1/sku",
            "/order/items",
            "/order/missing",
            "/a~1b/~0",
            "/",
            "/order/items/9/sku",
        ];
        let got = sel(body, &ptrs);
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        for (p, g) in ptrs.iter().zip(&got) {
            let want = v.pointer(p).map(|x| match x {
                serde_json::Value::String(s) => Scalar::Str(s.clone()),
                serde_json::Value::Number(n) => Scalar::Num(n.clone()),
                serde_json::Value::Bool(b) => Scalar::Bool(*b),
                serde_json::Value::Null => Scalar::Null,
                _ => Scalar::Composite,
            });
            assert_eq!(g, &want, "pointer {p}");
        }
    }

    #[test]
    fn invalid_documents_are_errors() {
        let p = vec![tokens("/a")];
        for bad in ["", "{", "{\"a\":1} x", "[1,]", "\u{1}"] {
            assert!(select(bad.as_bytes(), &p).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(10_000);
        assert!(select(deep.as_bytes(), &p).is_err());
    }
}
