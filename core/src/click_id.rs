//! What ties a conversion to an ad click and a device beyond the user identifiers: the click
//! ids that ad platforms put on landing URLs (kept by the adapters in first-party cookies) and
//! the client's IP address.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::IpAddr;
use serde::{Deserialize, Serialize};

use crate::extract::{cookies, query_value};

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
    if !path_and_query.contains('?') {
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
    let jar = cookies(headers, ClickIdName::ALL.map(ClickIdName::cookie_name));
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

/// The canonical text of an IPv4 or IPv6 address. Accepts what adapters and headers carry:
/// a bare address, `ip:port`, `[v6]:port`, or a comma-separated `X-Forwarded-For` list (the
/// first entry, the original client, is taken).
pub fn normalize_ip(raw: &str) -> Option<String> {
    // ',', '[', ']' and ':' are ASCII: cutting at them keeps char boundaries.
    let first = match raw.bytes().position(|b| b == b',') {
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
        let mut colons = first.bytes().enumerate().filter(|&(_, b)| b == b':');
        match (colons.next(), colons.next()) {
            (Some((colon, _)), None) => first.get(..colon)?,
            _ => first,
        }
    };
    bare.parse::<IpAddr>().ok().map(|ip| match ip {
        IpAddr::V4(v4) => ipv4_text(v4.octets()),
        IpAddr::V6(v6) => v6.to_string(),
    })
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
        bare.parse::<IpAddr>().ok().map(|ip| match ip {
            IpAddr::V4(v4) => ipv4_text(v4.octets()),
            IpAddr::V6(v6) => v6.to_string(),
        })
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
