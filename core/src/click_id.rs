//! What ties a conversion to an ad click and a device beyond the user identifiers: the click
//! ids that ad platforms put on landing URLs (kept by the adapters in first-party cookies) and
//! the client's IP address.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::extract::{cookies, query_value};
use crate::normalize::find_byte;

/// The click-id parameters of the platforms we know, spelled as on their landing URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClickIdName {
    #[serde(rename = "fbclid")]
    Fbclid,
    #[serde(rename = "gclid")]
    Gclid,
    #[serde(rename = "ttclid")]
    Ttclid,
    #[serde(rename = "ScCid")]
    ScCid,
    #[serde(rename = "epik")]
    Epik,
    #[serde(rename = "rdt_cid")]
    RdtCid,
}

impl ClickIdName {
    /// Every known click id, in the order they are sent.
    pub const ALL: [Self; 6] = [
        Self::Fbclid,
        Self::Gclid,
        Self::Ttclid,
        Self::ScCid,
        Self::Epik,
        Self::RdtCid,
    ];

    /// The query parameter on a landing URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fbclid => "fbclid",
            Self::Gclid => "gclid",
            Self::Ttclid => "ttclid",
            Self::ScCid => "ScCid",
            Self::Epik => "epik",
            Self::RdtCid => "rdt_cid",
        }
    }

    /// The first-party cookie an adapter keeps it in between the landing and the conversion.
    pub fn cookie_name(self) -> &'static str {
        match self {
            Self::Fbclid => "capi_fbclid",
            Self::Gclid => "capi_gclid",
            Self::Ttclid => "capi_ttclid",
            Self::ScCid => "capi_sccid",
            Self::Epik => "capi_epik",
            Self::RdtCid => "capi_rdt_cid",
        }
    }
}

/// One `{id, name}` entry of the event's `click_ids`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickId {
    pub id: String,
    pub name: ClickIdName,
}

/// Longest click id kept (Google's gclid is ~100 characters; 512 leaves room).
pub const MAX_CLICK_ID_LEN: usize = 512;

/// A click id that is safe in a cookie and in JSON: trimmed, printable ASCII without cookie
/// separators or quotes, not too long.
pub fn clean_click_id(v: &str) -> Option<&str> {
    let v = crate::normalize::trim(v);
    (!v.is_empty()
        && v.len() <= MAX_CLICK_ID_LEN
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_'
                        | b'.'
                        | b'~'
                        | b'!'
                        | b'*'
                        | b'('
                        | b')'
                        | b':'
                        | b'/'
                        | b'+'
                        | b'='
                )
        }))
    .then_some(v)
}

/// Click ids on a landing URL (`path` with its query string).
pub fn click_ids_in_query(path_and_query: &str) -> Vec<ClickId> {
    if find_byte(path_and_query.as_bytes(), b'?').is_none() {
        return Vec::new();
    }
    ClickIdName::ALL
        .iter()
        .filter_map(|&name| {
            let v = query_value(path_and_query, name.as_str())?;
            clean_click_id(&v).map(|id| ClickId {
                id: id.to_string(),
                name,
            })
        })
        .collect()
}

/// Click ids a request carries: on its own URL (a landing that converts at once wins) or in
/// the first-party cookies an adapter set on an earlier landing.
pub fn click_ids_of_request(headers: &[(String, String)], path_and_query: &str) -> Vec<ClickId> {
    let fresh = click_ids_in_query(path_and_query);
    // Most requests carry no click-id cookie: their cookie headers are not parsed.
    let jar = if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("cookie") && may_hold_click_id_cookie(v))
    {
        cookies(headers, ClickIdName::ALL.map(ClickIdName::cookie_name))
    } else {
        [None; ClickIdName::ALL.len()]
    };
    ClickIdName::ALL
        .iter()
        .zip(jar)
        .filter_map(|(&name, in_cookie)| {
            fresh.iter().find(|c| c.name == name).cloned().or_else(|| {
                in_cookie.and_then(clean_click_id).map(|id| ClickId {
                    id: id.to_string(),
                    name,
                })
            })
        })
        .collect()
}

/// The two bytes after `capi_` in each click-id cookie name ([`ClickIdName::cookie_name`];
/// a test holds the two lists together).
const COOKIE_NAME_MARKS: [&[u8; 2]; 6] = [b"fb", b"gc", b"tt", b"sc", b"ep", b"rd"];

/// Whether a cookie header may hold a click-id cookie: each of their names holds `capi_`
/// and then one of [`COOKIE_NAME_MARKS`], so a header without any such text holds none of
/// them (the cookie names are matched exactly). Found from each `_`, eight bytes at a time.
fn may_hold_click_id_cookie(header: &str) -> bool {
    let b = header.as_bytes();
    let mut from = 0;
    while let Some(p) = b.get(from..).and_then(|rest| find_byte(rest, b'_')) {
        let at = from + p;
        if at >= 4
            && b.get(at - 4..at) == Some(b"capi".as_slice())
            && b.get(at + 1..at + 3)
                .is_some_and(|m| COOKIE_NAME_MARKS.iter().any(|c| c.as_slice() == m))
        {
            return true;
        }
        from = at + 1;
    }
    false
}

/// The canonical text of an IPv4 or IPv6 address. Accepts what adapters and headers carry:
/// a bare address, `ip:port`, `[v6]:port`, or a comma-separated `X-Forwarded-For` list (the
/// first entry, the original client, is taken).
pub fn normalize_ip(raw: &str) -> Option<String> {
    // ',', '[', ']' and ':' are ASCII: cutting at them keeps char boundaries.
    let first = match find_byte(raw.as_bytes(), b',') {
        Some(comma) => raw.get(..comma)?,
        None => raw,
    };
    let first = crate::normalize::trim(first);
    if first.is_empty() || first.len() > 64 {
        return None;
    }
    let bare = if let Some(rest) = first.strip_prefix('[') {
        rest.get(..rest.bytes().position(|b| b == b']')?)?
    } else {
        // One colon: `ip:port`; none or several: the address as it is.
        let b = first.as_bytes();
        match find_byte(b, b':') {
            Some(colon)
                if b.get(colon + 1..)
                    .and_then(|r| find_byte(r, b':'))
                    .is_none() =>
            {
                first.get(..colon)?
            }
            _ => first,
        }
    };
    ip_text(bare)
}

/// The canonical text of a bare address, as `str::parse::<IpAddr>` and the address's Display
/// make it.
fn ip_text(bare: &str) -> Option<String> {
    let b = bare.as_bytes();
    let mut at = 0;
    // A whole dotted quad as read_ipv4 takes it (decimal octets up to 255, no leading
    // zeros) is already the text Display writes: the input, copied.
    if read_ipv4(b, &mut at).is_some() && at == b.len() {
        return Some(String::from(bare));
    }
    parse_ipv6(b).map(ipv6_text)
}

// The address parser of `core::net` (`str::parse::<IpAddr>`), rule for rule, on bytes and
// without its generic machinery (~3 KB of the filter); the tests compare the two.

/// A number of at most `max_digits` digits in `radix` that fits `limit`; with
/// `zero_prefix` false, more than one digit may not start with 0. Moves `at` only on success.
fn read_number(
    b: &[u8],
    at: &mut usize,
    radix: u32,
    max_digits: usize,
    zero_prefix: bool,
    limit: u32,
) -> Option<u32> {
    let mut p = *at;
    let (mut value, mut digits) = (0u32, 0);
    let leading_zero = b.get(p) == Some(&b'0');
    while let Some(d) = b.get(p).and_then(|c| char::from(*c).to_digit(radix)) {
        value = value * radix + d;
        if value > limit {
            return None;
        }
        digits += 1;
        if digits > max_digits {
            return None;
        }
        p += 1;
    }
    if digits == 0 || (!zero_prefix && leading_zero && digits > 1) {
        return None;
    }
    *at = p;
    Some(value)
}

/// `a.b.c.d`, decimal octets without leading zeros. Moves `at` only on success.
fn read_ipv4(b: &[u8], at: &mut usize) -> Option<[u8; 4]> {
    let mut p = *at;
    let mut octets = [0u8; 4];
    for (i, o) in octets.iter_mut().enumerate() {
        if i > 0 {
            if b.get(p) != Some(&b'.') {
                return None;
            }
            p += 1;
        }
        *o = u8::try_from(read_number(b, &mut p, 10, 3, false, 255)?).ok()?;
    }
    *at = p;
    Some(octets)
}

/// Colon-separated groups into `groups`, an IPv4 address in the last two places allowed: how
/// many groups were read and whether the IPv4 form ended them.
fn read_groups(b: &[u8], at: &mut usize, groups: &mut [u16]) -> (usize, bool) {
    let limit = groups.len();
    for i in 0..limit {
        let mut p = *at;
        if i > 0 {
            if b.get(p) != Some(&b':') {
                return (i, false);
            }
            p += 1;
        }
        if i + 1 < limit
            && let Some([o1, o2, o3, o4]) = read_ipv4(b, &mut p)
            && let Some([g1, g2]) = groups.get_mut(i..i + 2)
        {
            *g1 = u16::from_be_bytes([o1, o2]);
            *g2 = u16::from_be_bytes([o3, o4]);
            *at = p;
            return (i + 2, true);
        }
        match read_number(b, &mut p, 16, 4, true, 0xffff) {
            Some(g) => {
                if let Some(slot) = groups.get_mut(i) {
                    *slot = g as u16;
                }
                *at = p;
            }
            None => return (i, false),
        }
    }
    (limit, false)
}

/// A whole IPv6 address: eight groups, or fewer around one `::`.
fn parse_ipv6(b: &[u8]) -> Option<[u16; 8]> {
    let mut at = 0;
    let mut head = [0u16; 8];
    let (head_size, head_ipv4) = read_groups(b, &mut at, &mut head);
    if head_size == 8 {
        return (at == b.len()).then_some(head);
    }
    if head_ipv4 || b.get(at..at + 2) != Some(b"::") {
        return None;
    }
    at += 2;
    let mut tail = [0u16; 7];
    let limit = 8 - (head_size + 1);
    let (tail_size, _) = read_groups(b, &mut at, tail.get_mut(..limit)?);
    if at != b.len() {
        return None;
    }
    head.get_mut(8 - tail_size..)?
        .copy_from_slice(tail.get(..tail_size)?);
    Some(head)
}

/// The text `Ipv6Addr`'s Display writes, without the formatting machinery (~2 KB of the
/// filter): `::ffff:a.b.c.d` for an IPv4-mapped address, else lower-case hex groups with the
/// longest run of two or more zero groups (the first of equal ones) written `::`.
fn ipv6_text(seg: [u16; 8]) -> String {
    let mut out = String::with_capacity(39);
    if let [0, 0, 0, 0, 0, 0xffff, hi, lo] = seg {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        out.push_str("::ffff:");
        out.push_str(&ipv4_text([a, b, c, d]));
        return out;
    }
    let (mut zeros_at, mut zeros) = (0, 0);
    let (mut run_at, mut run) = (0, 0);
    for (i, g) in seg.iter().enumerate() {
        if *g == 0 {
            if run == 0 {
                run_at = i;
            }
            run += 1;
            if run > zeros {
                (zeros_at, zeros) = (run_at, run);
            }
        } else {
            run = 0;
        }
    }
    let groups = |out: &mut String, groups: &[u16]| {
        for (i, g) in groups.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            let digits = (16 - g.leading_zeros()).div_ceil(4).max(1);
            for k in (0..digits).rev() {
                out.push(char::from(
                    b"0123456789abcdef"[usize::from((g >> (4 * k)) & 0xf)],
                ));
            }
        }
    };
    if zeros > 1 {
        groups(&mut out, seg.get(..zeros_at).unwrap_or_default());
        out.push_str("::");
        groups(&mut out, seg.get(zeros_at + zeros..).unwrap_or_default());
    } else {
        groups(&mut out, &seg);
    }
    out
}

/// `a.b.c.d`, as `Ipv4Addr`'s Display writes it, without the formatting machinery.
fn ipv4_text(octets: [u8; 4]) -> String {
    let mut out = String::with_capacity(15);
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if o >= 100 {
            out.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            out.push(char::from(b'0' + o / 10 % 10));
        }
        out.push(char::from(b'0' + o % 10));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::borrow::ToOwned;
    use alloc::vec;

    #[test]
    fn click_ids_from_urls_and_cookies() {
        let got = click_ids_in_query("/landing?utm=x&gclid=Cj0KCQ-abc_1&ScCid=sc%2D1&fbclid=");
        assert_eq!(
            got,
            vec![
                ClickId {
                    id: "Cj0KCQ-abc_1".to_owned(),
                    name: ClickIdName::Gclid
                },
                ClickId {
                    id: "sc-1".to_owned(),
                    name: ClickIdName::ScCid
                },
            ]
        );
        assert!(click_ids_in_query("/landing").is_empty());
        assert!(
            click_ids_in_query("/x?gclid=a%3Bb").is_empty(),
            "';' refused"
        );
        assert!(
            click_ids_in_query("/x?gclid=a%22b").is_empty(),
            "'\"' refused"
        );
        let headers = vec![(
            "cookie".to_owned(),
            "capi_guid=x; capi_fbclid=fb.1.2; capi_gclid=old; capi_ttclid=a;b".to_owned(),
        )];
        let known = click_ids_of_request(&headers, "/x?gclid=new");
        let pairs: Vec<(&str, &str)> = known
            .iter()
            .map(|c| (c.name.as_str(), c.id.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![("fbclid", "fb.1.2"), ("gclid", "new"), ("ttclid", "a")]
        );
        assert!(click_ids_of_request(&[], "/checkout").is_empty());
    }

    #[test]
    fn ipv4_text_is_display() {
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            for b in [0u8, 7, 42, 255] {
                let octets = [a, b, 255 - a, b / 3];
                assert_eq!(
                    ipv4_text(octets),
                    core::net::Ipv4Addr::from(octets).to_string()
                );
            }
        }
    }

    /// `normalize_ip` as it was before it cut at byte positions.
    fn normalize_ip_with_splits(raw: &str) -> Option<String> {
        let first = raw.split(',').next()?.trim();
        if first.is_empty() || first.len() > 64 {
            return None;
        }
        let bare = if let Some(rest) = first.strip_prefix('[') {
            rest.split_once(']')?.0
        } else if first.bytes().filter(|&b| b == b':').count() == 1 {
            first.split_once(':')?.0
        } else {
            first
        };
        // std's parser and Display: what the split form returned (IPv4 dotted, IPv6 canonical).
        bare.parse::<core::net::IpAddr>()
            .ok()
            .map(|ip| ip.to_string())
    }

    proptest::proptest! {
        #[test]
        fn normalize_ip_is_the_split_form(
            raw in proptest::prop_oneof![
                "[ \\[]?[0-9a-fA-F:.]{0,20}[\\]]?(:[0-9]{0,5})?[ ]?(,[ 0-9.]{0,8})?",
                "[0-9.:,\\[\\] é]{0,24}",
                "\\PC{0,12}",
            ]
        ) {
            proptest::prop_assert_eq!(normalize_ip(&raw), normalize_ip_with_splits(&raw));
        }
    }

    #[test]
    fn ipv6_text_is_display() {
        // Every pattern of zero and non-zero groups, with values of 1 to 4 hex digits.
        for mask in 0u32..256 {
            for (k, v) in [1u16, 0xa, 0x1f, 0xabc, 0xffff, 0x1000]
                .into_iter()
                .enumerate()
            {
                let seg: [u16; 8] = core::array::from_fn(|i| {
                    if mask & (1 << i) == 0 {
                        0
                    } else {
                        v.wrapping_add((i * k) as u16).max(1)
                    }
                });
                let want = core::net::Ipv6Addr::from(seg).to_string();
                assert_eq!(ipv6_text(seg), want, "{seg:x?}");
            }
        }
        for seg in [
            [0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201],
            [0, 0, 0, 0, 0, 0xffff, 0, 0],
            [0, 0, 0, 0, 0, 0, 0xc000, 0x0201],
            [0, 0, 0, 0, 0, 0xfffe, 0xc000, 0x0201],
            [0; 8],
            [0xffff; 8],
        ] {
            assert_eq!(ipv6_text(seg), core::net::Ipv6Addr::from(seg).to_string());
        }
    }

    proptest::proptest! {
        #[test]
        fn ipv6_text_is_display_on_any_address(seg in proptest::array::uniform8(proptest::prop_oneof![proptest::strategy::Just(0u16), proptest::num::u16::ANY])) {
            proptest::prop_assert_eq!(ipv6_text(seg), core::net::Ipv6Addr::from(seg).to_string());
        }
    }

    /// What `str::parse::<IpAddr>` makes of `s`, in normalize_ip's terms.
    fn std_ip(s: &str) -> Option<String> {
        s.parse::<core::net::IpAddr>().ok().map(|ip| ip.to_string())
    }

    #[test]
    fn ip_parser_is_cores() {
        for s in [
            "",
            ":",
            "::",
            ":::",
            "::1",
            "1::",
            "1::2",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6::8",
            "1::2::3",
            "12345::",
            "0000:0000::",
            "00000::",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "1:2:3:4:5:1.2.3.4",
            "1.2.3.4::",
            "1.2.3.4:5::",
            "::1.2.3.4:5",
            "1:2:3:4:5::1.2.3.4",
            "1:2:3:4:5:6::1.2.3.4",
            "::01.2.3.4",
            "1.2.3.4",
            "01.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.",
            "1..2.3",
            "1.2.3.0004",
            "1.2.3.000",
            "a.b.c.d",
            "FFFF::",
            "fFfF::AbCd",
            "g::",
            "::ffff",
            "1:2",
            "1:",
            ":1",
            "::1:",
            "1:2:3:4:5:6:7:8:",
            "٣.1.1.1",
            "::١",
        ] {
            assert_eq!(ip_text(s), std_ip(s), "{s:?}");
        }
    }

    /// Every click-id cookie name is `capi_` and one of the marks the pre-check looks for.
    #[test]
    fn cookie_names_carry_the_marks() {
        for name in ClickIdName::ALL {
            let n = name.cookie_name().as_bytes();
            assert_eq!(&n[..5], b"capi_", "{}", name.cookie_name());
            assert!(
                COOKIE_NAME_MARKS.iter().any(|m| &n[5..7] == m.as_slice()),
                "{}",
                name.cookie_name()
            );
        }
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// With the pre-check, the click ids are what parsing every cookie header gave.
        #[test]
        fn click_ids_are_the_full_parse(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(ClickIdName::ALL.to_vec())
                        .prop_map(|n| alloc::format!("{}=", n.cookie_name())),
                    proptest::sample::select(alloc::vec![
                        "capi_guid=", "capi_g", "capi_", "capi", "_", "xcapi_fbclid=", "capi_fbclid ",
                        " capi_gclid = ", "CAPI_GCLID=", "capi_rdt_cid", "; ", ";", "=", "\"",
                    ])
                    .prop_map(String::from),
                    "[a-zA-Z0-9_.=; -]{0,12}",
                ],
                0..10,
            ),
            second in proptest::option::of("[a-z_=; ]{0,20}"),
            name in proptest::sample::select(alloc::vec!["cookie", "Cookie", "COOKIE", "cookies", "x-cookie"]),
            query in proptest::sample::select(alloc::vec!["/checkout", "/x?gclid=q1", "/x?fbclid=a&epik=b"]),
        ) {
            let mut headers = alloc::vec![(String::from(name), pieces.concat())];
            if let Some(v) = second {
                headers.push((String::from("cookie"), v));
            }
            let fresh = click_ids_in_query(query);
            let jar = cookies(&headers, ClickIdName::ALL.map(ClickIdName::cookie_name));
            let want: Vec<ClickId> = ClickIdName::ALL
                .iter()
                .zip(jar)
                .filter_map(|(&name, in_cookie)| {
                    fresh.iter().find(|c| c.name == name).cloned().or_else(|| {
                        in_cookie.and_then(clean_click_id).map(|id| ClickId { id: id.to_string(), name })
                    })
                })
                .collect();
            proptest::prop_assert_eq!(click_ids_of_request(&headers, query), want);
        }

        /// Dotted quads of any octet text (leading zeros, over 255, too many digits):
        /// the input as it is exactly when std parses it, and then std's Display.
        #[test]
        fn ipv4_text_is_cores(octets in proptest::array::uniform4("(0|00|0[0-9]{1,2}|[0-9]{1,4}|25[0-9]|2[0-9][0-9])"), tail in "(|[.:x ]|[.][0-9])") {
            let s = alloc::format!("{}.{}.{}.{}{}", octets[0], octets[1], octets[2], octets[3], tail);
            proptest::prop_assert_eq!(ip_text(&s), std_ip(&s), "{:?}", s);
        }

        #[test]
        fn ip_parser_is_cores_on_any_text(s in "[0-9a-fA-F:.x]{0,40}") {
            proptest::prop_assert_eq!(ip_text(&s), std_ip(&s), "{:?}", s);
        }

        #[test]
        fn ip_parser_is_cores_on_address_text(seg in proptest::array::uniform8(proptest::prop_oneof![proptest::strategy::Just(0u16), proptest::num::u16::ANY]), form in 0usize..4) {
            let v6 = core::net::Ipv6Addr::from(seg);
            let text = match form {
                0 => alloc::format!("{v6}"),
                1 => alloc::format!("{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}", seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7]),
                2 => alloc::format!("{:04X}:{:04x}:{:x}:{:x}:{:x}:{:x}:{}.{}.{}.{}", seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6] >> 8, seg[6] & 0xff, seg[7] >> 8, seg[7] & 0xff),
                _ => alloc::format!("{}.{}.{}.{}", seg[0] & 0xff, seg[1] >> 8, seg[2] % 300, seg[3] & 0x1ff),
            };
            proptest::prop_assert_eq!(ip_text(&text), std_ip(&text), "{:?}", text);
        }
    }

    #[test]
    fn ip_addresses() {
        for (raw, want) in [
            ("203.0.113.7", Some("203.0.113.7")),
            (" 203.0.113.7:51234 ", Some("203.0.113.7")),
            ("203.0.113.7, 10.0.0.1", Some("203.0.113.7")),
            ("2001:DB8::1", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            (
                "2001:0db8:0000:0000:0000:0000:0000:0001",
                Some("2001:db8::1"),
            ),
            ("::ffff:192.0.2.1", Some("::ffff:192.0.2.1")),
            ("unknown", None),
            ("", None),
            ("999.1.1.1", None),
            ("1.2.3", None),
            ("[::1", None),
            ("a@b.co", None),
        ] {
            assert_eq!(normalize_ip(raw).as_deref(), want, "{raw:?}");
        }
    }
}
