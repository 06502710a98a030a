//! Reads the values at a few JSON pointers in one pass over a body, skipping everything else
//! without building a `Value` tree: the per-event cost in a proxy is mostly JSON, and a rule
//! needs only a handful of fields from a body of any size.
//!
//! The scanner is hand-written (no serde visitor per value, no allocation per key) and accepts
//! exactly the documents that `serde_json` accepted when this module read them through a
//! serde visitor, which the tests check against that visitor: strict RFC 8259 syntax; the keys
//! and values on the pointers' paths are decoded as serde_json decodes them (valid UTF-8, no
//! lone surrogate escapes, numbers in f64 range), everything else is only skipped (any bytes
//! ≥ 0x20 inside strings, any depth); at most 127 nested containers on the pointers' paths.
//! Strings without escapes are borrowed from the body.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use serde_json::Number;

/// What stands at a pointer.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(Number),
    Bool(bool),
    Null,
    /// An object or array: not a usable field value.
    Composite,
}

/// The body is not one valid JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotJson;

type Res<T = ()> = Result<T, NotJson>;

/// The values at `pointers` (RFC 6901, such as `/order/id`), in the same order; None where
/// nothing stands. Err when the body is not one valid JSON document.
pub fn select<'a>(body: &'a [u8], pointers: &[&str]) -> Res<Vec<Option<Scalar<'a>>>> {
    let mut out = alloc::vec![None; pointers.len()];
    PointerTree::new(pointers).select_into(body, &mut out)?;
    Ok(out)
}

/// Pointers split into a tree of unescaped reference tokens. Built once per set of pointers
/// (the configuration builds one per rule and body when it is read), so that a selection only
/// walks the document: each container on a path compares its keys with the few children of
/// one node, and keys of no child's length are refused before any compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerTree {
    /// The pointers it was built from, in slot order.
    pointers: Vec<String>,
    /// `nodes[0]` is the document itself.
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Node {
    /// Slots of the pointers that end at this node.
    ends: Vec<usize>,
    /// Child tokens (unescaped: `~1` read as `/`, `~0` as `~`) and their nodes.
    children: Vec<(Vec<u8>, usize)>,
    /// The [`length_bit`]s of the children's tokens.
    lengths: u64,
}

impl Node {
    #[cfg_attr(not(target_family = "wasm"), inline(always))]
    fn child(&self, key: &[u8]) -> Option<usize> {
        // Most keys of a container are no child's length: no compare at all.
        if self.lengths & length_bit(key.len()) == 0 {
            return None;
        }
        self.children
            .iter()
            .find(|(token, _)| same(token, key))
            .map(|&(_, node)| node)
    }
}

impl Default for PointerTree {
    /// The tree of no pointer.
    fn default() -> Self {
        Self::new(&[])
    }
}

/// A reference token with `~1` read as `/` and `~0` as `~`, left to right; any other `~` is
/// itself.
fn unescape_token(token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    let mut i = 0;
    while let Some(&c) = token.get(i) {
        match (c, token.get(i + 1)) {
            (b'~', Some(b'0')) => {
                out.push(b'~');
                i += 2;
            }
            (b'~', Some(b'1')) => {
                out.push(b'/');
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

impl PointerTree {
    /// The tree of `pointers` (RFC 6901): the tokens of a pointer are what follows each '/'
    /// (a pointer without '/' is the whole document).
    pub fn new(pointers: &[&str]) -> Self {
        let mut nodes = alloc::vec![Node::default()];
        for (slot, pointer) in pointers.iter().enumerate() {
            let mut at = 0;
            if let Some((_, rest)) = pointer.split_once('/') {
                for token in rest.split('/') {
                    let token = unescape_token(token.as_bytes());
                    let found = nodes
                        .get(at)
                        .and_then(|n: &Node| n.children.iter().find(|(t, _)| *t == token))
                        .map(|&(_, node)| node);
                    at = match found {
                        Some(node) => node,
                        None => {
                            let node = nodes.len();
                            nodes.push(Node::default());
                            if let Some(parent) = nodes.get_mut(at) {
                                parent.lengths |= length_bit(token.len());
                                parent.children.push((token, node));
                            }
                            node
                        }
                    };
                }
            }
            if let Some(n) = nodes.get_mut(at) {
                n.ends.push(slot);
            }
        }
        Self {
            pointers: pointers.iter().map(|p| String::from(*p)).collect(),
            nodes,
        }
    }

    /// Whether the tree was built from exactly these pointers, in this order.
    pub fn is_for(&self, pointers: &[&str]) -> bool {
        self.pointers.len() == pointers.len()
            && self.pointers.iter().zip(pointers).all(|(a, b)| a == b)
    }

    /// [`select`] into the caller's slots (`out[i]` for the tree's pointer `i`; the slots must
    /// start as None and be as many as the pointers), so that a caller needs no allocation.
    pub fn select_into<'a>(&self, body: &'a [u8], out: &mut [Option<Scalar<'a>>]) -> Res {
        let mut scan = Scan {
            b: body,
            text: core::str::from_utf8(body).ok(),
            i: 0,
            depth_left: 128,
        };
        scan.visit(self, 0, out)?;
        if scan.ws().is_some() {
            return Err(NotJson);
        }
        Ok(())
    }
}

/// Bit `len` (lengths of 63 and more share bit 63).
#[inline]
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// Byte equality of short strings, without a call to memcmp.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// `v` into the slots of the pointers that end at a node: moved into the only one (the usual
/// case), cloned when several pointers are the same.
#[inline]
fn set<'a>(out: &mut [Option<Scalar<'a>>], slots: &[usize], v: Scalar<'a>) {
    match slots {
        [] => {}
        [one] => {
            if let Some(slot) = out.get_mut(*one) {
                *slot = Some(v);
            }
        }
        many => {
            for &i in many {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(v.clone());
                }
            }
        }
    }
}

/// The open containers while skipping, one bit each (1 = object), of any depth.
struct Nesting {
    top: u64,
    len: usize,
    spilled: Vec<u64>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.len > 0 && self.len.is_multiple_of(64) {
            self.spilled.push(self.top);
            self.top = 0;
        }
        self.top = self.top << 1 | u64::from(object);
        self.len += 1;
    }

    fn pop(&mut self) {
        self.top >>= 1;
        self.len -= 1;
        if self.len > 0 && self.len.is_multiple_of(64) {
            self.top = self.spilled.pop().unwrap_or(0);
        }
    }

    fn in_object(&self) -> bool {
        self.top & 1 == 1
    }
}

// The scanner's small steps below are forced inline in native builds; the filter's .wasm,
// built for size, keeps one copy of each.

/// The index of the first byte at or after `i` that is not JSON whitespace.
#[cfg_attr(not(target_family = "wasm"), inline(always))]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !is_ws(c) {
            break;
        }
        i += 1;
    }
    i
}

/// JSON whitespace. All of it is at or below b' ': every other byte is told by one compare.
#[cfg_attr(not(target_family = "wasm"), inline(always))]
fn is_ws(c: u8) -> bool {
    c <= b' ' && matches!(c, b' ' | b'\n' | b'\t' | b'\r')
}

/// A string whose contents start at `i` (after the opening quote): where the contents end,
/// where the string ends (after the closing quote), and whether it holds escapes. Checks
/// escapes' syntax and refuses control characters, but neither UTF-8 nor surrogates
/// (serde_json skips strings the same way).
#[cfg_attr(not(target_family = "wasm"), inline(always))]
fn string_end(b: &[u8], mut i: usize) -> Res<(usize, usize, bool)> {
    let mut escaped = false;
    loop {
        i = crate::encode::plain_until(b, i);
        match b.get(i) {
            Some(b'"') => return Ok((i, i + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        let hex = b.get(i + 2..i + 6).ok_or(NotJson)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(NotJson);
                        }
                        i += 6;
                    }
                    _ => return Err(NotJson),
                }
            }
            _ => return Err(NotJson),
        }
    }
}

/// An object key at `i` (its opening quote) and its colon: the index after the colon.
#[cfg_attr(not(target_family = "wasm"), inline(always))]
fn key_end(b: &[u8], i: usize) -> Res<usize> {
    if b.get(i) != Some(&b'"') {
        return Err(NotJson);
    }
    let i = skip_ws(b, string_end(b, i + 1)?.1);
    if b.get(i) == Some(&b':') {
        Ok(i + 1)
    } else {
        Err(NotJson)
    }
}

/// `word` (true, false, null) at `i`: the index after it.
#[cfg_attr(not(target_family = "wasm"), inline(always))]
fn word_end(b: &[u8], i: usize, word: &[u8]) -> Res<usize> {
    match b.get(i..i + word.len()) {
        Some(w) if w == word => Ok(i + word.len()),
        _ => Err(NotJson),
    }
}

/// A number at `i` (RFC 8259 grammar): the index after it.
fn number_end(b: &[u8], mut i: usize) -> Res<usize> {
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => {
            i += 1;
            if b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(NotJson);
            }
        }
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return Err(NotJson),
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return Err(NotJson);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return Err(NotJson);
        }
    }
    Ok(i)
}

struct Scan<'a> {
    b: &'a [u8],
    /// The whole body as text when it is valid UTF-8 (checked once, which real bodies are):
    /// keys and values are then slices of it, not checked one by one.
    text: Option<&'a str>,
    i: usize,
    /// serde_json's recursion limit, counted over the containers on the pointers' paths.
    depth_left: u8,
}

impl<'a> Scan<'a> {
    /// Skips whitespace and peeks at the next byte.
    #[inline]
    fn ws(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if !is_ws(c) {
                return Some(c);
            }
            self.i += 1;
        }
        None
    }

    fn eat(&mut self, c: u8) -> Res {
        if self.ws() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    fn ident(&mut self, word: &[u8]) -> Res {
        self.i = word_end(self.b, self.i, word)?;
        Ok(())
    }

    /// After an opening quote: moves past the closing one. Returns where the contents end and
    /// whether they hold escapes (see [`string_end`]).
    #[inline(always)]
    fn string(&mut self) -> Res<(usize, bool)> {
        let (end, next, escaped) = string_end(self.b, self.i)?;
        self.i = next;
        Ok((end, escaped))
    }

    /// The decoded string whose contents are `start..end` (quotes excluded), decoded and
    /// checked as serde_json decodes a string it deserializes.
    fn decode(&self, start: usize, end: usize, escaped: bool) -> Res<Cow<'a, str>> {
        if escaped {
            let quoted = self.b.get(start - 1..end + 1).ok_or(NotJson)?;
            // Through Value (deserialize_any), not String: String's deserialize_string pulls
            // in serde's invalid-type message for floats, and with it core's float formatting
            // (~25 KB of the filter's .wasm).
            match serde_json::from_slice::<serde_json::Value>(quoted) {
                Ok(serde_json::Value::String(s)) => Ok(Cow::Owned(s)),
                _ => Err(NotJson),
            }
        } else {
            if let Some(text) = self.text {
                // Between two quotes: always on character boundaries.
                return text.get(start..end).map(Cow::Borrowed).ok_or(NotJson);
            }
            let raw = self.b.get(start..end).ok_or(NotJson)?;
            core::str::from_utf8(raw)
                .map(Cow::Borrowed)
                .map_err(|_| NotJson)
        }
    }

    /// Moves past one number (RFC 8259 grammar).
    fn number(&mut self) -> Res {
        self.i = number_end(self.b, self.i)?;
        Ok(())
    }

    /// Skips one value of any depth without recursion.
    fn skip_value(&mut self) -> Res {
        let b = self.b;
        let mut i = self.i;
        let mut open = Nesting {
            top: 0,
            len: 0,
            spilled: Vec::new(),
        };
        loop {
            // A value starts here.
            i = skip_ws(b, i);
            match b.get(i).copied().ok_or(NotJson)? {
                b'"' => i = string_end(b, i + 1)?.1,
                b'{' => {
                    i = skip_ws(b, i + 1);
                    if b.get(i) == Some(&b'}') {
                        i += 1;
                    } else {
                        open.push(true);
                        i = key_end(b, i)?;
                        continue;
                    }
                }
                b'[' => {
                    i = skip_ws(b, i + 1);
                    if b.get(i) == Some(&b']') {
                        i += 1;
                    } else {
                        open.push(false);
                        continue;
                    }
                }
                b'-' | b'0'..=b'9' => i = number_end(b, i)?,
                b't' => i = word_end(b, i, b"true")?,
                b'f' => i = word_end(b, i, b"false")?,
                b'n' => i = word_end(b, i, b"null")?,
                _ => return Err(NotJson),
            }
            // A value ended: close containers until one takes a comma.
            loop {
                if open.len == 0 {
                    self.i = i;
                    return Ok(());
                }
                let object = open.in_object();
                i = skip_ws(b, i);
                match b.get(i) {
                    Some(b',') => {
                        i += 1;
                        if object {
                            i = key_end(b, skip_ws(b, i))?;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        i += 1;
                        open.pop();
                    }
                    Some(b']') if !object => {
                        i += 1;
                        open.pop();
                    }
                    _ => return Err(NotJson),
                }
            }
        }
    }

    fn enter(&mut self) -> Res {
        self.depth_left -= 1;
        if self.depth_left == 0 {
            Err(NotJson)
        } else {
            Ok(())
        }
    }

    /// One value on the pointers' paths, at `node` of the tree.
    fn visit(&mut self, tree: &PointerTree, node: usize, out: &mut [Option<Scalar<'a>>]) -> Res {
        let n = tree.nodes.get(node).ok_or(NotJson)?;
        match self.ws().ok_or(NotJson)? {
            b'{' => {
                self.enter()?;
                self.i += 1;
                set(out, &n.ends, Scalar::Composite);
                if self.ws() == Some(b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.eat(b'"')?;
                        let start = self.i;
                        let (end, escaped) = self.string()?;
                        let next = if escaped {
                            let key = self.decode(start, end, true)?;
                            n.child(key.as_bytes())
                        } else {
                            // Only compared: checked as UTF-8 (as serde_json does) but not
                            // turned into a str.
                            let raw = self.b.get(start..end).ok_or(NotJson)?;
                            if self.text.is_none()
                                && !raw.is_ascii()
                                && core::str::from_utf8(raw).is_err()
                            {
                                return Err(NotJson);
                            }
                            n.child(raw)
                        };
                        self.eat(b':')?;
                        match next {
                            None => self.skip_value()?,
                            Some(child) => self.visit(tree, child, out)?,
                        }
                        match self.ws() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(NotJson),
                        }
                    }
                }
                self.depth_left += 1;
            }
            b'[' => {
                self.enter()?;
                self.i += 1;
                set(out, &n.ends, Scalar::Composite);
                if self.ws() == Some(b']') {
                    self.i += 1;
                } else {
                    let mut index = 0usize;
                    loop {
                        let next = if n.children.is_empty() {
                            None
                        } else {
                            let mut buf = [0u8; 20];
                            n.child(crate::encode::decimal(index as u64, &mut buf))
                        };
                        match next {
                            None => self.skip_value()?,
                            Some(child) => self.visit(tree, child, out)?,
                        }
                        match self.ws() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(NotJson),
                        }
                        index += 1;
                    }
                }
                self.depth_left += 1;
            }
            b'"' => {
                self.i += 1;
                let start = self.i;
                let (end, escaped) = self.string()?;
                let s = self.decode(start, end, escaped)?;
                if !n.ends.is_empty() {
                    set(out, &n.ends, Scalar::Str(s));
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                self.number()?;
                // Parsed even when nothing ends here: serde_json refuses out-of-range numbers
                // on the path the same way.
                let text = self.b.get(start..self.i).ok_or(NotJson)?;
                // Through Value, like strings above: Number's own visitor reports a wrong type
                // through serde's messages, which link core's float formatting into the .wasm.
                let num = match serde_json::from_slice::<serde_json::Value>(text) {
                    Ok(serde_json::Value::Number(num)) => num,
                    _ => return Err(NotJson),
                };
                set(out, &n.ends, Scalar::Num(num));
            }
            b't' => {
                self.ident(b"true")?;
                set(out, &n.ends, Scalar::Bool(true));
            }
            b'f' => {
                self.ident(b"false")?;
                set(out, &n.ends, Scalar::Bool(false));
            }
            b'n' => {
                self.ident(b"null")?;
                set(out, &n.ends, Scalar::Null);
            }
            _ => return Err(NotJson),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::{String, ToString};
    use alloc::vec;
    use proptest::prelude::*;

    fn sel(body: &str, ptrs: &[&str]) -> Vec<Option<Scalar<'static>>> {
        select(body.as_bytes(), ptrs)
            .unwrap()
            .into_iter()
            .map(|v| {
                v.map(|s| match s {
                    Scalar::Str(c) => Scalar::Str(Cow::Owned(c.into_owned())),
                    Scalar::Num(n) => Scalar::Num(n),
                    Scalar::Bool(b) => Scalar::Bool(b),
                    Scalar::Null => Scalar::Null,
                    Scalar::Composite => Scalar::Composite,
                })
            })
            .collect()
    }

    #[test]
    fn agrees_with_value_pointer() {
        let body = r#"{"order":{"id":"A-1","total":12.5,"n":3,"neg":-2,"ok":true,"none":null,"items":[{"sku":"x"},{"sku":"y"}]},"a/b":{"~":"t"},"":1,"esc":"q\"\u00e9"}"#;
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
            "/esc",
        ];
        let got = sel(body, &ptrs);
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        for (p, g) in ptrs.iter().zip(&got) {
            let want = v.pointer(p).map(|x| match x {
                serde_json::Value::String(s) => Scalar::Str(Cow::Owned(s.clone())),
                serde_json::Value::Number(n) => Scalar::Num(n.clone()),
                serde_json::Value::Bool(b) => Scalar::Bool(*b),
                serde_json::Value::Null => Scalar::Null,
                _ => Scalar::Composite,
            });
            assert_eq!(g, &want, "pointer {p}");
        }
    }

    #[test]
    fn unescaped_strings_are_borrowed() {
        let body = br#"{"a":"plain","b":"t\u0061b"}"#;
        let got = select(body, &["/a", "/b"]).unwrap();
        assert!(matches!(&got[0], Some(Scalar::Str(Cow::Borrowed("plain")))));
        assert!(matches!(&got[1], Some(Scalar::Str(Cow::Owned(s))) if s == "tab"));
    }

    #[test]
    fn invalid_documents_are_errors() {
        for bad in [
            "",
            "{",
            "{\"a\":1} x",
            "[1,]",
            "\u{1}",
            "{\"a\":1,}",
            "01",
            "1.",
            "-",
        ] {
            assert!(select(bad.as_bytes(), &["/a"]).is_err(), "{bad:?}");
            assert!(select(bad.as_bytes(), &[]).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(10_000);
        assert!(select(deep.as_bytes(), &["/a"]).is_err());
    }

    #[test]
    fn more_than_64_pointers() {
        let body = r#"{"a":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69]}"#;
        let ptrs: Vec<String> = (0..70).map(|i| alloc::format!("/a/{i}")).collect();
        let refs: Vec<&str> = ptrs.iter().map(String::as_str).collect();
        let got = sel(body, &refs);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, &Some(Scalar::Num(Number::from(i as u64))));
        }
    }

    /// The serde visitor this module used before the hand-written scanner: the oracle for
    /// which documents are accepted and what is read from them.
    mod oracle {
        use alloc::string::String;
        use alloc::vec::Vec;
        use core::fmt;
        use serde::de::{
            self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
        };
        use serde_json::Number;

        #[derive(Debug, Clone, PartialEq)]
        pub enum Scalar {
            Str(String),
            Num(Number),
            Bool(bool),
            Null,
            Composite,
        }

        pub fn tokens(pointer: &str) -> Vec<String> {
            pointer
                .split('/')
                .skip(1)
                .map(|t| t.replace("~1", "/").replace("~0", "~"))
                .collect()
        }

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

        struct Node<'p, 'o> {
            pointers: &'p [Vec<String>],
            live: &'p [usize],
            depth: usize,
            out: &'o mut [Option<Scalar>],
        }

        impl Node<'_, '_> {
            fn set_here(&mut self, v: &Scalar) {
                for &i in self.live {
                    if let (true, Some(slot)) =
                        (self.pointers[i].len() == self.depth, self.out.get_mut(i))
                    {
                        *slot = Some(v.clone());
                    }
                }
            }

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
                    let live = self.children(&alloc::format!("{index}"));
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
    }

    fn same_as_oracle(body: &[u8], ptrs: &[&str]) {
        let tokens: Vec<Vec<String>> = ptrs.iter().map(|p| oracle::tokens(p)).collect();
        let want = oracle::select(body, &tokens).ok();
        let got = select(body, ptrs).ok().map(|vals| {
            vals.into_iter()
                .map(|v| {
                    v.map(|s| match s {
                        Scalar::Str(c) => oracle::Scalar::Str(c.into_owned()),
                        Scalar::Num(n) => oracle::Scalar::Num(n),
                        Scalar::Bool(b) => oracle::Scalar::Bool(b),
                        Scalar::Null => oracle::Scalar::Null,
                        Scalar::Composite => oracle::Scalar::Composite,
                    })
                })
                .collect::<Vec<_>>()
        });
        assert_eq!(
            got,
            want,
            "body {:?} pointers {ptrs:?}",
            String::from_utf8_lossy(body)
        );
    }

    #[test]
    fn edge_cases_match_the_serde_visitor() {
        let p = ["/a", "/a/b", "/a/0", "/x~1y", "/~0", "/"];
        for body in [
            &b"{\"a\":\"\\ud800\"}"[..],    // lone surrogate on the path
            b"{\"z\":\"\\ud800\"}",         // ... and off the path
            b"{\"a\":\"\xff\"}",            // invalid UTF-8 on the path
            b"{\"z\":\"\xff\",\"\xfe\":1}", // ... off the path and in a top key
            b"{\"z\":{\"\xfe\":1}}",        // ... in a skipped key
            b"{\"a\":1e400}",               // out of range on the path
            b"{\"z\":1e400}",               // ... off the path
            b"{\"a\":{\"b\":-0}}",
            b"{\"a\":[1e400]}",
            b"{\"a\":[0,{\"b\":1}]}",
            b"{\"a\":\"x\",\"a\":{\"b\":2}}",
            b"{\"a\":{\"b\":2},\"a\":3}",
            b"{\"x/y\":1,\"~\":2,\"\":3}",
            b"{\"a\":\"\x7f\"}",
            b"{\"a\":\"\x1f\"}",
            b" {\"a\" : [ ] , \"b\" : { } } ",
            b"{\"a\":tru}",
            b"{\"a\":nul}",
            b"{\"a\":\"\\u00\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\ud83d\\ude00\"}",
            b"{\"a\":\"\\ud83d\\u0041\"}",
        ] {
            same_as_oracle(body, &p);
        }
        let deep_on_path = alloc::format!("{{\"a\":{}1{}}}", "[".repeat(130), "]".repeat(130));
        let deep_ptr = alloc::format!("/a{}", "/0".repeat(130));
        same_as_oracle(deep_on_path.as_bytes(), &[deep_ptr.as_str()]);
        for n in [120, 125, 126, 127, 128, 129] {
            let body = alloc::format!("{}1{}", "[".repeat(n), "]".repeat(n));
            let ptr = "/0".repeat(n);
            same_as_oracle(body.as_bytes(), &[ptr.as_str()]);
            same_as_oracle(body.as_bytes(), &["/a"]);
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let key = prop::sample::select(vec!["a", "b", "0", "1", "x/y", "~", "", "é", "a\"b"]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\"\\\\/\u{0}-\u{1f}é€😀]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    fn pointer() -> impl Strategy<Value = String> {
        let token = prop::sample::select(vec![
            "a", "b", "0", "1", "x~1y", "~0", "", "é", "a\"b", "01",
        ]);
        prop::collection::vec(token, 1..4).prop_map(|t| {
            t.iter().fold(String::new(), |mut s, t| {
                s.push('/');
                s.push_str(t);
                s
            })
        })
    }

    /// Edits that push a valid document towards the cases serde_json refuses.
    fn edit() -> impl Strategy<Value = (usize, u8, &'static [u8])> {
        let inserts: Vec<&'static [u8]> = vec![
            b"\"", b"\\", b"{", b"}", b"[", b"]", b",", b":", b"\x01", b"\xff", b"\xc3", b"0",
            b"e", b"-", b" ", b"\\ud800", b"1e400", b"\\u12", b"", b"truex", b"\n",
        ];
        (any::<usize>(), 0u8..3, prop::sample::select(inserts))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn any_document_reads_as_the_serde_visitor_read_it(
            v in json_value(),
            pretty in any::<bool>(),
            ptrs in prop::collection::vec(pointer(), 0..5),
            edits in prop::collection::vec(edit(), 0..3),
        ) {
            let mut body = if pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            };
            for (at, op, bytes) in edits {
                let at = at % (body.len() + 1);
                match op {
                    0 => { body.splice(at..at, bytes.iter().copied()); }
                    1 if at < body.len() => { body.remove(at); }
                    _ => { if at < body.len() { body[at] = bytes.first().copied().unwrap_or(b' '); } }
                }
            }
            let refs: Vec<&str> = ptrs.iter().map(String::as_str).collect();
            same_as_oracle(&body, &refs);
            // Repeated until the reference tokens no longer fit on the stack: the same values.
            let many: Vec<&str> = refs.iter().copied().cycle().take(refs.len() * 10).collect();
            let got = select(&body, &many).ok();
            let want = select(&body, &refs).ok().map(|v| {
                v.iter().cycle().take(many.len()).cloned().collect::<Vec<_>>()
            });
            prop_assert_eq!(got, want);
        }
    }
}
