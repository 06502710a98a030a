//! Identifier normalization and hashing, so that the same person hashes to the same value on
//! every host (the platforms match on these bytes).

use alloc::borrow::Cow;
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
    NotAnIpAddress,
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
            Self::NotAnIpAddress => "not an IP address",
        }
    }
}

impl core::fmt::Display for IdError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `s.trim()`, without decoding a char where the ends are ASCII: ASCII whitespace (what
/// `char::is_whitespace` says of ASCII: space and `\t`..`\r`) is cut byte by byte; only when a
/// non-ASCII char ends up at either end does `str::trim` look at it.
// Inlined in native builds (the common case then costs a compare, not a call); the filter's
// .wasm keeps one copy.
#[cfg_attr(not(target_family = "wasm"), inline(always))]
pub(crate) fn trim(s: &str) -> &str {
    if let [first, .., last] | [first @ last] = s.as_bytes()
        && first.is_ascii_graphic()
        && last.is_ascii_graphic()
    {
        return s;
    }
    trim_ends(s)
}

/// [`trim`] when an end is not printable ASCII.
#[inline(never)]
fn trim_ends(s: &str) -> &str {
    let b = s.as_bytes();
    let is_ws = |c: &u8| matches!(c, b' ' | b'\t'..=b'\r');
    let start = b.iter().position(|c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !is_ws(c)).map_or(start, |i| i + 1);
    // Cut at ASCII bytes: char boundaries.
    let t = s.get(start..end).unwrap_or(s);
    match t.as_bytes() {
        [first, .., last] | [first @ last] if first.is_ascii() && last.is_ascii() => t,
        _ => t.trim(),
    }
}

/// The index of the first `needle` in `hay`, eight bytes at a time.
pub(crate) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut i = 0;
    while let Some(chunk) = hay.get(i..i + 8) {
        let Ok(arr) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        // Zero bytes of v are the needle's; the lowest flagged one is exact.
        let v = u64::from_le_bytes(arr) ^ (ONES * u64::from(needle));
        let hit = v.wrapping_sub(ONES) & !v & (ONES << 7);
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let tail = hay.get(i..)?;
    tail.iter().position(|&c| c == needle).map(|p| i + p)
}

/// Lower-case hex of any bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
    // Hex digits are ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// SHA-256 of the bytes as 64 lower-case hex characters.
pub fn sha256_hex(data: &[u8]) -> String {
    finish_hex(Sha256::new_with_prefix(data))
}

/// The 64 lower-case hex characters of a finished SHA-256, written into a fixed array first.
pub(crate) fn finish_hex(hasher: Sha256) -> String {
    let digest: [u8; 32] = hasher.finalize().into();
    let text = hex64(&digest);
    // Hex digits are ASCII.
    core::str::from_utf8(&text)
        .map(String::from)
        .unwrap_or_default()
}

/// The 64 lower-case hex digits of a digest. Where SSE2 or NEON is baseline this is a plain
/// loop per byte, which the compiler turns into vector code (8 bytes of digest per ~18
/// instructions); elsewhere (the .wasm) eight digits per u64 step with [`hex8`].
fn hex64(digest: &[u8; 32]) -> [u8; 64] {
    let mut text = [0u8; 64];
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    for (k, &b) in digest.iter().enumerate() {
        let digit = |n: u8| n + b'0' + if n > 9 { b'a' - b'0' - 10 } else { 0 };
        text[2 * k] = digit(b >> 4);
        text[2 * k + 1] = digit(b & 0xf);
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    for (out, four) in text.chunks_exact_mut(8).zip(digest.chunks_exact(4)) {
        if let Ok(four) = <[u8; 4]>::try_from(four) {
            out.copy_from_slice(&hex8(four));
        }
    }
    text
}

/// The lower-case hex of four bytes, eight characters computed in one u64: each byte's
/// nibbles spread to a byte each, then '0' added, and 'a' - '0' - 10 more where a nibble
/// is 10 or more.
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
fn hex8(four: [u8; 4]) -> [u8; 8] {
    const LOW_NIBBLES: u64 = 0x000f_000f_000f_000f;
    let x = u64::from(u32::from_le_bytes(four));
    // Byte k of the input to byte 2k.
    let spread = (x & 0xff) | (x & 0xff00) << 8 | (x & 0xff_0000) << 16 | (x & 0xff00_0000) << 24;
    // High nibble of byte k at byte 2k, low nibble at byte 2k + 1.
    let nibbles = (spread >> 4) & LOW_NIBBLES | (spread & LOW_NIBBLES) << 8;
    let letters = ((nibbles + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (nibbles + 0x3030_3030_3030_3030 + letters * 0x27).to_le_bytes()
}

/// True when the value (after trimming) is exactly 64 hex characters, in either case: such a
/// value is taken as already hashed and never hashed again.
pub fn is_sha256_hex(s: &str) -> bool {
    is_trimmed_sha256_hex(trim(s))
}

/// [`is_sha256_hex`] of a value already trimmed.
fn is_trimmed_sha256_hex(t: &str) -> bool {
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Trimmed and lower-cased, refused unless it looks like `local@domain.tld`.
pub fn normalize_email(raw: &str) -> Result<String, IdError> {
    let e = crate::lowercase::to_lowercase(raw.trim());
    check_email(&e)?;
    Ok(e)
}

/// Longest email address accepted (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;

/// Bytes that make an address implausible: ASCII whitespace, controls, `<>,;"()[]\\`, and
/// `@` (refused after the first one). Bytes of 0x80 and up are not in it: their chars are
/// checked apart.
const NOT_IN_EMAIL: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c <= 0x20 {
        t[c] = true;
        c += 1;
    }
    t[0x7f] = true;
    let specials = b"<>,;\"()[]\\@";
    let mut i = 0;
    while i < specials.len() {
        t[specials[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether byte `c` is in [`NOT_IN_EMAIL`] (the index is a u8: always in the table).
#[inline(always)]
fn not_in_email(c: u8) -> bool {
    NOT_IN_EMAIL[usize::from(c)]
}

/// The checks of [`normalize_email`] on the trimmed, lower-cased address, in one pass over
/// its bytes; non-ASCII chars are then checked for whitespace and controls.
fn check_email(address: &str) -> Result<(), IdError> {
    check_email_bytes(address.as_bytes())?;
    // Bytes of 0x80 and up passed the table: their chars are checked here.
    if !address.is_ascii() && address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(IdError::NotAnEmail);
    }
    Ok(())
}

/// The bytewise part of [`check_email`]: all of it for an ASCII address.
fn check_email_bytes(e: &[u8]) -> Result<(), IdError> {
    if e.is_empty() {
        return Err(IdError::Empty);
    }
    if e.len() > MAX_EMAIL_LEN {
        return Err(IdError::TooLong);
    }
    let at = find_byte(e, b'@').ok_or(IdError::NotAnEmail)?;
    let (local, domain) = (e.get(..at).unwrap_or(&[]), e.get(at + 1..).unwrap_or(&[]));
    // Accumulated without branching per byte: any refused byte, anywhere.
    let mut refused = local.is_empty() || local.len() > 64;
    for &c in local {
        refused |= not_in_email(c);
    }
    // Domain labels between dots: at least two, none empty, none starting or ending in '-'.
    let mut prev = b'.';
    let mut dots = 0usize;
    for &c in domain {
        refused |= not_in_email(c);
        if c == b'.' {
            refused |= prev == b'.' || prev == b'-';
            dots += 1;
        } else if c == b'-' {
            refused |= prev == b'.';
        }
        prev = c;
    }
    refused |= dots == 0 || prev == b'.' || prev == b'-';
    if refused {
        Err(IdError::NotAnEmail)
    } else {
        Ok(())
    }
}

/// The HashedEmail value: an existing SHA-256 hex passes through lower-cased, anything else
/// is normalized and hashed.
pub fn hash_email(raw: &str) -> Result<String, IdError> {
    let t = trim(raw);
    if is_trimmed_sha256_hex(t) {
        return Ok(t.to_ascii_lowercase());
    }
    if t.is_ascii() && t.len() <= MAX_EMAIL_LEN {
        // ASCII lower-cases in place: no String for the normalized address, and its bytes
        // are checked and hashed as they are.
        let mut buf = [0u8; MAX_EMAIL_LEN];
        let lower = buf.get_mut(..t.len()).ok_or(IdError::TooLong)?;
        // Copied and lower-cased in one pass.
        for (l, &c) in lower.iter_mut().zip(t.as_bytes()) {
            *l = c.to_ascii_lowercase();
        }
        check_email_bytes(lower)?;
        return Ok(sha256_hex(lower));
    }
    normalize_email(raw).map(|e| sha256_hex(e.as_bytes()))
}

/// E.164 digits without '+': `+1 (415) 555-2671` → `14155552671`. A leading `+` or `00`
/// marks an international number; otherwise one national trunk `0` is dropped and
/// `default_calling_code` is prefixed, unless the digits already start with that code and are
/// long enough to hold a 10-digit national number after it.
pub fn normalize_phone(raw: &str, default_calling_code: &str) -> Result<String, IdError> {
    let mut buf = [0u8; PHONE_BUF];
    e164_digits(raw, default_calling_code, &mut buf).map(String::from)
}

/// Room for the digits of a phone of at most 64 bytes, plus a calling code of up to 64 bytes.
const PHONE_BUF: usize = 128;

/// [`normalize_phone`], its digits written into `buf` instead of a String.
fn e164_digits<'b>(
    raw: &str,
    default_calling_code: &str,
    buf: &'b mut [u8; PHONE_BUF],
) -> Result<&'b str, IdError> {
    let digits = e164_bytes(trim(raw), default_calling_code, buf)?;
    core::str::from_utf8(digits).map_err(|_| IdError::NotAPhone)
}

/// [`e164_digits`] of a trimmed value, as bytes (valid UTF-8: the calling code, if any,
/// then ASCII digits). The value is read byte
/// by byte: the only non-ASCII char it may hold is U+00A0 (the bytes C2 A0), skipped like
/// the ASCII separators; any other non-ASCII char starts with another byte.
fn e164_bytes<'b>(
    t: &str,
    default_calling_code: &str,
    buf: &'b mut [u8; PHONE_BUF],
) -> Result<&'b [u8], IdError> {
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
    // The digits go to the end of buf, which leaves room for the calling code before them.
    let mut start = PHONE_BUF - 64;
    let mut end = start;
    let body = body.as_bytes();
    let mut j = 0;
    while let Some(&c) = body.get(j) {
        match c {
            b'0'..=b'9' => {
                let Some(slot) = buf.get_mut(end) else {
                    return Err(IdError::TooLong);
                };
                *slot = c;
                end += 1;
            }
            b' ' | b'-' | b'.' | b'(' | b')' | b'/' => {}
            0xc2 if body.get(j + 1) == Some(&0xa0) => j += 1,
            _ => return Err(IdError::NotAPhone),
        }
        j += 1;
    }
    let digits = buf.get(start..end).unwrap_or(&[]);
    if !international {
        if digits.starts_with(b"00") {
            start += 2;
        } else {
            let cc = default_calling_code.trim_start_matches('+').as_bytes();
            if !(!cc.is_empty() && digits.starts_with(cc) && digits.len() >= cc.len() + 10) {
                if digits.first() == Some(&b'0') {
                    start += 1;
                }
                // A calling code longer than the room before the digits is no calling code.
                start = start.checked_sub(cc.len()).ok_or(IdError::NotAPhone)?;
                buf.get_mut(start..start + cc.len())
                    .ok_or(IdError::NotAPhone)?
                    .copy_from_slice(cc);
            }
        }
    }
    let e164 = buf.get(start..end).unwrap_or(&[]);
    if (MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&e164.len()) && e164.first() != Some(&b'0') {
        // The calling code's text (valid UTF-8 as any str) and ASCII digits.
        Ok(e164)
    } else {
        Err(IdError::NotAPhone)
    }
}

/// The phone as an identifier: plain `Phone` digits or `HashedPhone`, as configured. An
/// already-hashed value can only be a HashedPhone and passes through lower-cased.
pub fn phone_identifier(
    raw: &str,
    default_calling_code: &str,
    hashed: bool,
) -> Result<Identifier, IdError> {
    let t = trim(raw);
    if is_trimmed_sha256_hex(t) {
        return Ok(Identifier {
            id: t.to_ascii_lowercase(),
            name: IdName::HashedPhone,
        });
    }
    let mut buf = [0u8; PHONE_BUF];
    // trim(t) is t: the value is trimmed once.
    let digits = e164_bytes(t, default_calling_code, &mut buf)?;
    Ok(if hashed {
        Identifier {
            id: sha256_hex(digits),
            name: IdName::HashedPhone,
        }
    } else {
        Identifier {
            id: String::from(core::str::from_utf8(digits).map_err(|_| IdError::NotAPhone)?),
            name: IdName::Phone,
        }
    })
}

/// A UUID in canonical form (lower-case, hyphenated). Accepts braces, `urn:uuid:` and
/// upper case on input.
pub fn parse_guid(raw: &str) -> Result<String, IdError> {
    let t = trim(raw);
    let t = t.strip_prefix("urn:uuid:").unwrap_or(t);
    let t = t
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(t);
    let Ok(b) = <&[u8; 36]>::try_from(t.as_bytes()) else {
        return Err(if t.is_empty() {
            IdError::Empty
        } else {
            IdError::NotAUuid
        });
    };
    // Each byte's class against the class its place wants, without a branch per byte.
    let mut wrong = 0u8;
    for (&c, &want) in b.iter().zip(&GUID_PLACES) {
        wrong |= GUID_CLASS[usize::from(c)] ^ want;
    }
    if wrong != 0 {
        return Err(IdError::NotAUuid);
    }
    Ok(t.to_ascii_lowercase())
}

/// [`GUID_CLASS`] of a hex digit.
const HEX_DIGIT: u8 = 1;
/// [`GUID_CLASS`] of `-`.
const HYPHEN: u8 = 2;

/// For each byte: [`HEX_DIGIT`], [`HYPHEN`] or 0.
const GUID_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        if (c as u8).is_ascii_hexdigit() {
            t[c] = HEX_DIGIT;
        }
        c += 1;
    }
    t[b'-' as usize] = HYPHEN;
    t
};

/// The class each of the 36 places of a hyphenated UUID wants.
const GUID_PLACES: [u8; 36] = {
    let mut t = [HEX_DIGIT; 36];
    t[8] = HYPHEN;
    t[13] = HYPHEN;
    t[18] = HYPHEN;
    t[23] = HYPHEN;
    t
};

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
    let t = trim(raw);
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

/// [`percent_decode`], borrowing the input when there is nothing to decode.
pub fn percent_decode_cow(s: &str, plus_as_space: bool) -> Cow<'_, str> {
    let b = s.as_bytes();
    if find_byte(b, b'%').is_some() || (plus_as_space && find_byte(b, b'+').is_some()) {
        Cow::Owned(percent_decode(s, plus_as_space))
    } else {
        Cow::Borrowed(s)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The in-place ASCII path of hash_email is the String path of normalize_email.
        #[test]
        fn hash_email_is_normalize_then_hash(
            raw in prop_oneof![
                "[ \t]{0,2}[A-Za-z0-9.+_-]{0,12}@[A-Za-z0-9.-]{0,12}[ \n]{0,2}",
                "[ -~]{0,20}",
                "\\PC{0,20}",
                "[a@.]{250,260}",
                "[ \t]{0,2}[0-9a-fA-F]{63,65}[ \n\u{a0}]{0,2}",
                "[ \u{3000}]{0,2}[A-Za-z.]{0,6}@[a-zé.-]{0,8}[ \u{85}]{0,2}",
            ]
        ) {
            // The form before one trim and a bytewise check: trim in is_sha256_hex, then
            // again for the value; the address checked as a str.
            let want = if is_sha256_hex(&raw) {
                Ok(raw.trim().to_ascii_lowercase())
            } else {
                normalize_email(&raw).map(|e| sha256_hex(e.as_bytes()))
            };
            prop_assert_eq!(hash_email(&raw), want);
        }
    }

    /// The email checks as they were before the one-pass form: char by char.
    fn check_email_chars(e: &str) -> Result<(), IdError> {
        if e.is_empty() {
            return Err(IdError::Empty);
        }
        if e.len() > MAX_EMAIL_LEN {
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
            && domain
                .split('.')
                .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
            && !e.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(
                        c,
                        '<' | '>' | ',' | ';' | '"' | '(' | ')' | '[' | ']' | '\\'
                    )
            });
        if plausible {
            Ok(())
        } else {
            Err(IdError::NotAnEmail)
        }
    }

    /// `normalize_phone` as it was before the digits went to a stack buffer.
    fn normalize_phone_with_strings(
        raw: &str,
        default_calling_code: &str,
    ) -> Result<String, IdError> {
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

    proptest! {
        /// The eight-at-a-time search is `position`.
        #[test]
        fn find_byte_is_position(
            hay in prop::collection::vec(prop::sample::select(alloc::vec![0u8, 1, b';', b'=', b'%', 0x3a, 0xbb, 0xff]), 0..40),
            needle in prop::sample::select(alloc::vec![0u8, b';', b'=', b'%', 0xff]),
        ) {
            prop_assert_eq!(find_byte(&hay, needle), hay.iter().position(|&c| c == needle));
        }

        /// A digest's 64 digits are the table's, byte by byte.
        #[test]
        fn hex64_is_hex(digest in any::<[u8; 32]>()) {
            let want = hex(&digest);
            prop_assert_eq!(&hex64(&digest)[..], want.as_bytes());
        }

        /// Eight hex digits at once are the table's, byte by byte.
        #[test]
        fn hex8_is_hex(four in any::<[u8; 4]>()) {
            let want = hex(&four);
            prop_assert_eq!(&hex8(four)[..], want.as_bytes());
        }

        #[test]
        fn trim_is_str_trim(
            s in prop_oneof![
                "\\PC{0,6}",
                "[ \t\n\u{b}\u{c}\r\u{1c}\u{85}\u{a0}\u{2028}\u{3000}ax.é]{0,6}",
                any::<String>(),
            ]
        ) {
            prop_assert_eq!(trim(&s), s.trim());
        }

        /// The one-pass check is the char-by-char one.
        #[test]
        fn one_pass_email_check_is_the_char_check(
            e in prop_oneof![
                "[a-c.@-]{0,12}",
                "[a-z0-9]{0,4}@[a-z0-9.-]{0,10}",
                "[ -~]{0,16}",
                "[\u{0}-\u{7f}]{0,16}",
                "[a.@]{60,70}@[a.-]{0,8}",
                "[a.]{250,256}@b.c",
                "[a.@é\u{a0}\u{85}\u{2028}\u{3000}\u{9f}-]{0,14}",
                "[a-z]{1,3}[ -~é\u{a0}]?@[a-zé]{1,4}[.][a-z\u{85}]{1,3}",
                "\\PC{0,14}",
            ]
        ) {
            prop_assert_eq!(check_email(&e), check_email_chars(&e));
        }

        /// The stack-buffer digits are the String form's.
        #[test]
        fn e164_digits_are_the_string_form(
            raw in prop_oneof![
                "[ +]{0,2}[0-9 ().\u{a0}/-]{0,20}[ ]?",
                "[0+]{0,3}[0-9]{0,16}",
                "[0-9a+ ]{0,70}",
                "\\PC{0,12}",
            ],
            cc in prop_oneof![
                "[+]?[0-9]{0,4}",
                "[0-9a]{0,3}",
                "[1]{60,70}",
                "\\PC{0,3}",
            ],
        ) {
            prop_assert_eq!(normalize_phone(&raw, &cc), normalize_phone_with_strings(&raw, &cc));
        }

        /// The class-table check is the per-place check it replaced.
        #[test]
        fn parse_guid_is_the_per_place_check(
            raw in prop_oneof![
                "[0-9a-fA-F-]{36}",
                "[0-9a-f]{8}-[0-9a-fA-F]{4}-[0-9a-f]{4}-[0-9a-fA-Z]{4}-[0-9a-fg]{12}",
                "[ {]?(urn:uuid:)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}[} ]?",
                "[0-9a-f-]{35,37}",
                "\\PC{0,40}",
            ]
        ) {
            fn per_place(raw: &str) -> Result<String, IdError> {
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
            prop_assert_eq!(parse_guid(&raw), per_place(&raw));
        }

        /// The bytewise, trim-once identifier is the String form's, hashed or not.
        #[test]
        fn phone_identifier_is_the_string_form(
            raw in prop_oneof![
                "[ +]{0,2}[0-9 ().\u{a0}/-]{0,20}[ ]?",
                "[+]?[0-9\u{a0}\u{a1}\u{80}\u{bf}\u{2000}é]{8,16}",
                "[ \t]{0,2}[0-9a-fA-F]{63,65}[ \u{a0}]{0,2}",
                "\\PC{0,12}",
            ],
            cc in prop_oneof!["[+]?[0-9]{0,4}", "\\PC{0,3}"],
            hashed in any::<bool>(),
        ) {
            let want = if is_sha256_hex(&raw) {
                Ok(Identifier { id: raw.trim().to_ascii_lowercase(), name: IdName::HashedPhone })
            } else {
                normalize_phone_with_strings(&raw, &cc).map(|d| if hashed {
                    Identifier { id: sha256_hex(d.as_bytes()), name: IdName::HashedPhone }
                } else {
                    Identifier { id: d, name: IdName::Phone }
                })
            };
            prop_assert_eq!(phone_identifier(&raw, &cc, hashed), want);
        }
    }

    const JANE: &str = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d";
    const PHONE_US: &str = "758fbf68945f21c416814c539ab578876c8d98fb69e6da692def92cd52417fe0";

    #[test]
    fn email_known_answers() {
        let cases: &[(&str, Result<&str, IdError>)] = &[
            ("jane.doe@example.com", Ok(JANE)),
            ("  Jane.Doe@Example.COM  ", Ok(JANE)),
            ("\tjane.doe@EXAMPLE.com\n", Ok(JANE)),
            (
                "jane.doe+shop@example.com",
                Ok("bb55843f3da2af28071cd4be7ae1e05989dc6d3ea4833906f7d8fe4be35afad8"),
            ),
            (
                "ÉLODIE@exemple.fr",
                Ok("f34116fa1fa2ab3840367c97ac2fc11e9e811bc3c424a1361abfc3d719c18e8c"),
            ),
            (
                "用户@例子.广告",
                Ok("47b40c8a3b16aa231eecd6e9e92f4b16818e2ff8f2531ae7ceedb0afbd9c0ab7"),
            ),
            (
                "John@Example.org",
                Ok("b5fb79bc07fa24049f99f456f8f530af1cb9a13db14c4b02c83be7c1f0ceb968"),
            ),
            // Already hashed, upper case and padded: lower-cased, never hashed again.
            (
                " 86E0B9E56C17CC4D12387E1949B85053FBE73BC3CE5A1188713A9D300CC6133D ",
                Ok(JANE),
            ),
            ("not-an-email", Err(IdError::NotAnEmail)),
            ("a@b", Err(IdError::NotAnEmail)),
            ("a@@b.com", Err(IdError::NotAnEmail)),
            ("jane doe@example.com", Err(IdError::NotAnEmail)),
            ("jane@.example.com", Err(IdError::NotAnEmail)),
            ("   ", Err(IdError::Empty)),
            // 63 hex characters is not a hash: it is not an email either.
            (&JANE[1..], Err(IdError::NotAnEmail)),
        ];
        for (input, want) in cases {
            assert_eq!(
                hash_email(input).as_deref().map_err(|e| *e),
                *want,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn phone_known_answers() {
        let cases: &[(&str, &str, Result<&str, IdError>)] = &[
            ("+1 (415) 555-2671", "1", Ok("14155552671")),
            ("+1 (415) 555-2671", "44", Ok("14155552671")),
            ("0044 20 7946 0958", "1", Ok("442079460958")),
            ("(415) 555-2671", "1", Ok("14155552671")),
            ("415.555.2671", "+1", Ok("14155552671")),
            ("1-415-555-2671", "1", Ok("14155552671")),
            ("020 7946 0958", "44", Ok("442079460958")),
            ("+49 30 123456", "1", Ok("4930123456")),
            ("  +33 6 12 34 56 78  ", "1", Ok("33612345678")),
            ("+1 415 555 CALL", "1", Err(IdError::NotAPhone)),
            ("12", "1", Err(IdError::NotAPhone)),
            ("+1234567890123456", "1", Err(IdError::NotAPhone)),
            ("", "1", Err(IdError::Empty)),
        ];
        for (input, cc, want) in cases {
            assert_eq!(
                normalize_phone(input, cc).as_deref().map_err(|e| *e),
                *want,
                "input {input:?} cc {cc}"
            );
        }
    }

    #[test]
    fn phone_identifiers_plain_hashed_and_prehashed() {
        let plain = phone_identifier("+1 (415) 555-2671", "1", false).unwrap();
        assert_eq!(
            (plain.id.as_str(), plain.name),
            ("14155552671", IdName::Phone)
        );
        let hashed = phone_identifier("+1 (415) 555-2671", "1", true).unwrap();
        assert_eq!(
            (hashed.id.as_str(), hashed.name),
            (PHONE_US, IdName::HashedPhone)
        );
        let pre = phone_identifier(&PHONE_US.to_ascii_uppercase(), "1", false).unwrap();
        assert_eq!((pre.id.as_str(), pre.name), (PHONE_US, IdName::HashedPhone));
        let uk = phone_identifier("0044 20 7946 0958", "1", true).unwrap();
        assert_eq!(
            uk.id,
            "35e206e5dec4c89b9e8b71b8c32724a5bb518483ac5a20c6617d738375b3b823"
        );
    }

    #[test]
    fn guid_known_answers() {
        let want = "85b04ded-09dd-4015-ad30-581e45452dd9";
        assert_eq!(
            parse_guid("85B04DED-09DD-4015-AD30-581E45452DD9").as_deref(),
            Ok(want)
        );
        assert_eq!(
            parse_guid(" {85b04ded-09dd-4015-ad30-581e45452dd9} ").as_deref(),
            Ok(want)
        );
        assert_eq!(
            parse_guid("urn:uuid:85b04ded-09dd-4015-ad30-581e45452dd9").as_deref(),
            Ok(want)
        );
        assert_eq!(
            parse_guid("85b04ded09dd4015ad30581e45452dd9"),
            Err(IdError::NotAUuid)
        );
        assert_eq!(
            parse_guid("85b04ded-09dd-4015-ad30-581e45452dzz"),
            Err(IdError::NotAUuid)
        );
        assert_eq!(
            uuid_v4_from_bytes([0; 16]),
            "00000000-0000-4000-8000-000000000000"
        );
        assert_eq!(
            uuid_v4_from_bytes([0xff; 16]),
            "ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        let g = uuid_v4_from_bytes(*b"0123456789abcdef");
        assert_eq!(parse_guid(&g).as_deref(), Ok(g.as_str()));
    }

    #[test]
    fn first_party_ids() {
        assert_eq!(
            normalize_first_party_id("  customer_12345 ", 128).as_deref(),
            Ok("customer_12345")
        );
        assert_eq!(
            normalize_first_party_id("x".repeat(129).as_str(), 128),
            Err(IdError::TooLong)
        );
        assert_eq!(
            normalize_first_party_id("a\u{0}b", 128),
            Err(IdError::ControlCharacter)
        );
        assert_eq!(normalize_first_party_id(" ", 128), Err(IdError::Empty));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b.co+x", true), "a@b.co x");
        assert_eq!(percent_decode("a%40b.co+x", false), "a@b.co+x");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%E2%82%AC", false), "€");
    }
}
