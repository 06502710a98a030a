//! Content-Encoding of observed bodies: identity, gzip and deflate, decoded with an output cap
//! so that a small compressed body cannot expand without bound (a "gzip bomb").

use alloc::vec::Vec;
use miniz_oxide::inflate::{self, TINFLStatus};

/// A body encoding the filter can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

/// A `Content-Encoding` the filter does not decode (br, zstd, stacked codings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

/// Reads a `Content-Encoding` header. `None` (absent) and `identity` are plain; a list such as
/// `gzip, identity` is fine; anything else (br, zstd, stacked codings) is refused.
pub fn parse_encoding(value: Option<&str>) -> Result<Encoding, Unsupported> {
    let Some(value) = value else {
        return Ok(Encoding::Identity);
    };
    let mut out = Encoding::Identity;
    for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let this = if coding.eq_ignore_ascii_case("identity") {
            continue;
        } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            Encoding::Gzip
        } else if coding.eq_ignore_ascii_case("deflate") {
            Encoding::Deflate
        } else {
            return Err(Unsupported);
        };
        if out != Encoding::Identity {
            return Err(Unsupported); // stacked codings: not worth supporting
        }
        out = this;
    }
    Ok(out)
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The decoded body would exceed the limit.
    TooLarge,
    /// Not valid gzip/deflate data (or truncated).
    Corrupt,
}

impl DecodeError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "decoded body exceeds limits.max_body_bytes",
            Self::Corrupt => "compressed body is corrupt or truncated",
        }
    }
}

/// Decodes `body` under `encoding`, producing at most `limit` bytes.
pub fn decode(encoding: Encoding, body: Vec<u8>, limit: usize) -> Result<Vec<u8>, DecodeError> {
    match encoding {
        Encoding::Identity if body.len() > limit => Err(DecodeError::TooLarge),
        Encoding::Identity => Ok(body),
        Encoding::Gzip => gunzip(&body, limit),
        Encoding::Deflate => {
            // RFC 9110 `deflate` is zlib-wrapped, but some servers send raw deflate.
            if looks_like_zlib(&body) {
                inflate_with(inflate::decompress_to_vec_zlib_with_limit(&body, limit))
            } else {
                inflate_with(inflate::decompress_to_vec_with_limit(&body, limit))
            }
        }
    }
}

fn looks_like_zlib(b: &[u8]) -> bool {
    match (b.first(), b.get(1)) {
        (Some(&cmf), Some(&flg)) => {
            cmf & 0x0f == 8 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
        }
        _ => false,
    }
}

fn inflate_with(r: Result<Vec<u8>, inflate::DecompressError>) -> Result<Vec<u8>, DecodeError> {
    r.map_err(|e| {
        if e.status == TINFLStatus::HasMoreOutput {
            DecodeError::TooLarge
        } else {
            DecodeError::Corrupt
        }
    })
}

/// One gzip member (RFC 1952): header, raw deflate, CRC32 and ISIZE. The ISIZE is checked
/// (it catches truncation); the CRC is not recomputed.
fn gunzip(b: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    let header = b.get(..10).ok_or(DecodeError::Corrupt)?;
    if header[0] != 0x1f || header[1] != 0x8b || header[2] != 8 {
        return Err(DecodeError::Corrupt);
    }
    let flags = header[3];
    let mut pos = 10usize;
    if flags & FEXTRA != 0 {
        let len = b.get(pos..pos + 2).ok_or(DecodeError::Corrupt)?;
        pos += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = b.get(pos..).ok_or(DecodeError::Corrupt)?;
            let nul = rest
                .iter()
                .position(|c| *c == 0)
                .ok_or(DecodeError::Corrupt)?;
            pos += nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    let data = b.get(pos..).ok_or(DecodeError::Corrupt)?;
    if data.len() < 8 {
        return Err(DecodeError::Corrupt);
    }
    let out = inflate_with(inflate::decompress_to_vec_with_limit(data, limit))?;
    let isize_bytes = data.get(data.len() - 4..).ok_or(DecodeError::Corrupt)?;
    let isize = u32::from_le_bytes([
        isize_bytes[0],
        isize_bytes[1],
        isize_bytes[2],
        isize_bytes[3],
    ]);
    if isize != out.len() as u32 {
        return Err(DecodeError::Corrupt);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniz_oxide::deflate::{compress_to_vec, compress_to_vec_zlib};

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, FNAME_FLAG, 0, 0, 0, 0, 0, 255];
        out.extend_from_slice(b"name.json\0");
        out.extend(compress_to_vec(data, 6));
        out.extend_from_slice(&[0, 0, 0, 0]); // CRC not checked
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }
    const FNAME_FLAG: u8 = 8;

    #[test]
    fn encodings() {
        assert_eq!(parse_encoding(None), Ok(Encoding::Identity));
        assert_eq!(parse_encoding(Some("identity")), Ok(Encoding::Identity));
        assert_eq!(parse_encoding(Some("GZIP")), Ok(Encoding::Gzip));
        assert_eq!(parse_encoding(Some("x-gzip, identity")), Ok(Encoding::Gzip));
        assert_eq!(parse_encoding(Some("deflate")), Ok(Encoding::Deflate));
        assert_eq!(parse_encoding(Some("br")), Err(Unsupported));
        assert_eq!(parse_encoding(Some("gzip, gzip")), Err(Unsupported));
    }

    #[test]
    fn roundtrips() {
        let body = br#"{"order":{"id":"A-1","total":12.5}}"#.repeat(20);
        assert_eq!(decode(Encoding::Gzip, gzip(&body), 1 << 20).unwrap(), body);
        assert_eq!(
            decode(Encoding::Deflate, compress_to_vec_zlib(&body, 6), 1 << 20).unwrap(),
            body
        );
        assert_eq!(
            decode(Encoding::Deflate, compress_to_vec(&body, 6), 1 << 20).unwrap(),
            body
        );
        assert_eq!(
            decode(Encoding::Identity, body.clone(), body.len()).unwrap(),
            body
        );
        assert_eq!(
            decode(Encoding::Identity, body.clone(), body.len() - 1),
            Err(DecodeError::TooLarge)
        );
    }

    #[test]
    fn bombs_and_garbage() {
        let bomb = gzip(&vec![b'a'; 10 << 20]);
        assert!(bomb.len() < 64 * 1024);
        assert_eq!(
            decode(Encoding::Gzip, bomb, 256 * 1024),
            Err(DecodeError::TooLarge)
        );
        let z = compress_to_vec_zlib(&vec![0u8; 1 << 20], 9);
        assert_eq!(
            decode(Encoding::Deflate, z, 1000),
            Err(DecodeError::TooLarge)
        );
        assert_eq!(
            decode(Encoding::Gzip, b"not gzip at all".to_vec(), 1000),
            Err(DecodeError::Corrupt)
        );
        let mut cut = gzip(b"hello hello hello hello");
        cut.truncate(cut.len() - 12);
        assert_eq!(decode(Encoding::Gzip, cut, 1000), Err(DecodeError::Corrupt));
        assert_eq!(
            decode(Encoding::Gzip, Vec::new(), 1000),
            Err(DecodeError::Corrupt)
        );
    }
}
