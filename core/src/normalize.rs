//! Identifier normalization and hashing, so that the same person hashes to the same value on
//! every host (the platforms match on these bytes).

use alloc::string::String;
use alloc::vec::Vec;
use sha2::{Digest, Sha256};

use crate::event::{IdName, Identifier};

/// E.164 numbers have at most 15 digits; fewer than 8 with a country code is not a phone.
pub const MIN_PHONE_DIGITS: usize = 8;
pub const MAX_PHONE_DIGITS: usize = 15;
/// Upper bound for a FirstPartyId, so a hostile cookie cannot bloat every request.
pub const MAX_FIRST_PARTY_ID_LEN: usize = 256;

/// Why an identifier was refused. Never carries the raw value: it may be personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    Empty,
    NotAnEmail,
    NotAPhone,
    NotAUuid,
    TooLong,
    ControlCharacter,
}

impl IdError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NotAnEmail => "not a plausible email address",
            Self::NotAPhone => "not a phone number (8 to 15 digits with country code)",
            Self::NotAUuid => "not a UUID",
            Self::TooLong => "too long",
            Self::ControlCharacter => "contains control characters",
        }
    }
}

impl core::fmt::Display for IdError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of any bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// SHA-256 of the bytes as 64 lower-case hex characters.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// True when the value (after trimming) is exactly 64 hex characters, in either case: such a
/// value is taken as already hashed and never hashed again.
pub fn is_sha256_hex(s: &str) -> bool {
    let t = s.trim();
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Trimmed and lower-cased, refused unless it looks like `local@domain.tld`.
pub fn normalize_email(raw: &str) -> Result<String, IdError> {
    let e = raw.trim().to_lowercase();
    if e.is_empty() {
        return Err(IdError::Empty);
    }
    if e.len() > 254 {
        return Err(IdError::TooLong);
    }
    let (local, domain) = e.split_once('@').ok_or(IdError::NotAnEmail)?;
    let plausible = !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"' | '(' | ')' | '[' | ']' | '\\'));
    if plausible { Ok(e) } else { Err(IdError::NotAnEmail) }
}

/// The HashedEmail value: an existing SHA-256 hex passes through lower-cased, anything else
/// is normalized and hashed.
pub fn hash_email(raw: &str) -> Result<String, IdError> {
    if is_sha256_hex(raw) {
        return Ok(raw.trim().to_ascii_lowercase());
    }
    normalize_email(raw).map(|e| sha256_hex(e.as_bytes()))
}

/// E.164 digits without '+': `+1 (415) 555-2671` → `14155552671`. A leading `+` or `00`
/// marks an international number; otherwise one national trunk `0` is dropped and
/// `default_calling_code` is prefixed, unless the digits already start with that code and are
/// long enough to hold a 10-digit national number after it.
pub fn normalize_phone(raw: &str, default_calling_code: &str) -> Result<String, IdError> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(IdError::Empty);
    }
    if t.len() > 64 {
        return Err(IdError::TooLong);
    }
    let (international, body) = match t.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let mut digits = String::with_capacity(16);
    for c in body.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' | '\u{a0}' => {}
            _ => return Err(IdError::NotAPhone),
        }
    }
    let e164 = if international {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        String::from(rest)
    } else {
        let cc = default_calling_code.trim_start_matches('+');
        if !cc.is_empty() && digits.starts_with(cc) && digits.len() >= cc.len() + 10 {
            digits
        } else {
            let national = digits.strip_prefix('0').unwrap_or(&digits);
            let mut out = String::from(cc);
            out.push_str(national);
            out
        }
    };
    if (MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&e164.len()) && !e164.starts_with('0') {
        Ok(e164)
    } else {
        Err(IdError::NotAPhone)
    }
}

/// The phone as an identifier: plain `Phone` digits or `HashedPhone`, as configured. An
/// already-hashed value can only be a HashedPhone and passes through lower-cased.
pub fn phone_identifier(raw: &str, default_calling_code: &str, hashed: bool) -> Result<Identifier, IdError> {
    if is_sha256_hex(raw) {
        return Ok(Identifier { id: raw.trim().to_ascii_lowercase(), name: IdName::HashedPhone });
    }
    let digits = normalize_phone(raw, default_calling_code)?;
    Ok(if hashed {
        Identifier { id: sha256_hex(digits.as_bytes()), name: IdName::HashedPhone }
    } else {
        Identifier { id: digits, name: IdName::Phone }
    })
}

/// A UUID in canonical form (lower-case, hyphenated). Accepts braces, `urn:uuid:` and
/// upper case on input.
pub fn parse_guid(raw: &str) -> Result<String, IdError> {
    let t = raw.trim();
    let t = t.strip_prefix("urn:uuid:").unwrap_or(t);
    let t = t.strip_prefix('{').and_then(|x| x.strip_suffix('}')).unwrap_or(t);
    let b = t.as_bytes();
    if b.len() != 36 {
        return Err(if t.is_empty() { IdError::Empty } else { IdError::NotAUuid });
    }
    for (i, c) in b.iter().enumerate() {
        let ok = if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_hexdigit() };
        if !ok {
            return Err(IdError::NotAUuid);
        }
    }
    Ok(t.to_ascii_lowercase())
}

/// A version-4 UUID from 16 random bytes the caller supplies (the core has no randomness).
pub fn uuid_v4_from_bytes(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex(&bytes);
    let mut out = String::with_capacity(36);
    for (i, c) in h.chars().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// Trimmed, non-empty, at most `max_len` bytes, no control characters.
pub fn normalize_first_party_id(raw: &str, max_len: usize) -> Result<String, IdError> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(IdError::Empty);
    }
    if t.len() > max_len {
        return Err(IdError::TooLong);
    }
    if t.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    Ok(String::from(t))
}

/// Percent-decoding for query strings, cookies and form bodies (`+` as space only when asked).
pub fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let hi = b.get(i + 1).and_then(|x| char::from(*x).to_digit(16));
            let lo = b.get(i + 2).and_then(|x| char::from(*x).to_digit(16));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if plus_as_space && c == b'+' { b' ' } else { c });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
