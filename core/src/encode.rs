//! Destination wire formats behind one small interface: extraction, hashing and delivery
//! never change when a platform is added, only a new `Encoder`.

use alloc::vec::Vec;

use crate::click_id::ClickIdName;
use crate::config::Format;
use crate::event::{ConversionEvent, IdName};
use crate::time::write_iso8601;
use crate::user_agent::{DeviceType, UserAgent};

/// Turns events into one request body for a destination.
pub trait Encoder {
    /// The `Content-Type` of the body.
    fn content_type(&self) -> &'static str;
    /// Whether one request may carry several events.
    fn supports_batch(&self) -> bool;
    /// Appends the body for these events (one or, when batching, several) to `out`.
    fn encode(&self, events: &[ConversionEvent], out: &mut Vec<u8>);
}

/// The seed format: one JSON object per event; a batch is a JSON array of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedEncoder;

impl Encoder for SeedEncoder {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn supports_batch(&self) -> bool {
        true
    }

    fn encode(&self, events: &[ConversionEvent], out: &mut Vec<u8>) {
        match events {
            [one] => write_event(one, out),
            many => {
                out.push(b'[');
                for (i, e) in many.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_event(e, out);
                }
                out.push(b']');
            }
        }
    }
}

/// The encoder for a configured format.
pub fn encoder_for(format: Format) -> &'static dyn Encoder {
    match format {
        Format::Seed => &SeedEncoder,
    }
}

/// Appends the seed JSON of one event: byte for byte what `serde_json::to_vec` makes of the
/// event's `Serialize` derive (same field order, same escaping, same number formatting),
/// without serde's per-field machinery. The tests hold the two equal. Each string's quotes
/// are part of the literals around it, and the id lists' names (fixed enum texts) are
/// written as literals, not escaped.
pub fn write_event(e: &ConversionEvent, out: &mut Vec<u8>) {
    out.reserve(512);
    out.extend_from_slice(b"{\"advertiser_id\":");
    write_u64(e.advertiser_id, out);
    out.extend_from_slice(b",\"data_source_key\":\"");
    write_escaped(&e.data_source_key, out);
    out.extend_from_slice(b"\",\"conversion_type\":\"");
    write_escaped(e.conversion_type.as_str(), out);
    out.extend_from_slice(b"\",\"event_id\":\"");
    write_escaped(&e.event_id, out);
    out.extend_from_slice(b"\",\"ids\":[");
    write_id_objects(
        e.ids
            .iter()
            .map(|id| (id.id.as_str(), id_name_tail(id.name))),
        out,
    );
    out.push(b']');
    if let Some(ua) = &e.user_agent {
        write_user_agent(ua, out);
    }
    out.extend_from_slice(b",\"timestamp\":\"");
    write_iso8601(e.timestamp.0, out);
    out.push(b'"');
    if let Some(v) = e.value {
        out.extend_from_slice(b",\"value\":");
        write_f64(v, out);
    }
    out.extend_from_slice(b",\"currency\":\"");
    write_escaped(&e.currency, out);
    out.push(b'"');
    if let Some(o) = &e.order_id {
        out.extend_from_slice(b",\"order_id\":\"");
        write_escaped(o, out);
        out.push(b'"');
    }
    if !e.click_ids.is_empty() {
        out.extend_from_slice(b",\"click_ids\":[");
        write_id_objects(
            e.click_ids
                .iter()
                .map(|c| (c.id.as_str(), click_id_name_tail(c.name))),
            out,
        );
        out.push(b']');
    }
    if let Some(ip) = &e.client_ip_address {
        out.extend_from_slice(b",\"client_ip_address\":\"");
        write_escaped(ip, out);
        out.extend_from_slice(b"\"}");
    } else {
        out.push(b'}');
    }
}

/// `","name":"…"}`: the end of an `ids` entry, after its id.
/// `{"id":"…","name":"…"}` objects, comma-separated: each item's id (escaped) and the literal
/// that closes its object (the name, a fixed enum text).
fn write_id_objects<'a>(items: impl Iterator<Item = (&'a str, &'static [u8])>, out: &mut Vec<u8>) {
    for (i, (id, tail)) in items.enumerate() {
        out.extend_from_slice(if i > 0 { b",{\"id\":\"" } else { b"{\"id\":\"" });
        write_escaped(id, out);
        out.extend_from_slice(tail);
    }
}

fn id_name_tail(name: IdName) -> &'static [u8] {
    match name {
        IdName::Guid => b"\",\"name\":\"Guid\"}",
        IdName::HashedEmail => b"\",\"name\":\"HashedEmail\"}",
        IdName::Phone => b"\",\"name\":\"Phone\"}",
        IdName::HashedPhone => b"\",\"name\":\"HashedPhone\"}",
        IdName::FirstPartyId => b"\",\"name\":\"FirstPartyId\"}",
    }
}

/// `","name":"…"}`: the end of a `click_ids` entry, after its id.
fn click_id_name_tail(name: ClickIdName) -> &'static [u8] {
    match name {
        ClickIdName::Fbclid => b"\",\"name\":\"fbclid\"}",
        ClickIdName::Gclid => b"\",\"name\":\"gclid\"}",
        ClickIdName::Ttclid => b"\",\"name\":\"ttclid\"}",
        ClickIdName::ScCid => b"\",\"name\":\"ScCid\"}",
        ClickIdName::Epik => b"\",\"name\":\"epik\"}",
        ClickIdName::RdtCid => b"\",\"name\":\"rdt_cid\"}",
    }
}

/// `,"user_agent":{…}`.
fn write_user_agent(ua: &UserAgent, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"user_agent\":{\"browser_name\":\"");
    write_escaped(&ua.browser_name, out);
    out.extend_from_slice(b"\",\"browser_version\":\"");
    write_escaped(&ua.browser_version, out);
    out.extend_from_slice(b"\",\"os_name\":\"");
    write_escaped(&ua.os_name, out);
    out.extend_from_slice(b"\",\"os_version\":\"");
    write_escaped(&ua.os_version, out);
    out.extend_from_slice(match ua.device_type {
        DeviceType::Desktop => b"\",\"device_type\":\"desktop\"",
        DeviceType::Mobile => b"\",\"device_type\":\"mobile\"",
        DeviceType::Tablet => b"\",\"device_type\":\"tablet\"",
        DeviceType::Bot => b"\",\"device_type\":\"bot\"",
        DeviceType::Unknown => b"\",\"device_type\":\"unknown\"",
    });
    out.extend_from_slice(if ua.is_bot {
        b",\"is_bot\":true,\"raw\":\""
    } else {
        b",\"is_bot\":false,\"raw\":\""
    });
    write_escaped(&ua.raw, out);
    out.extend_from_slice(b"\"}");
}

/// Decimal, as serde_json (itoa) writes a u64.
fn write_u64(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(decimal(n, &mut [0u8; 20]));
}

/// The hundred two-digit pairs "00" to "99", in order.
pub(crate) const PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// `n` in decimal, written into the end of `buf` (20 digits hold any u64): two digits per
/// division from a table of the hundred pairs, as itoa (serde_json's) does.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    while n >= 100 {
        let r = (n % 100) as usize;
        n /= 100;
        i -= 2;
        if let (Some(to), Some(pair)) = (buf.get_mut(i..i + 2), PAIRS.get(2 * r..2 * r + 2)) {
            to.copy_from_slice(pair);
        }
    }
    // n < 100: one or two digits.
    let n = n as usize;
    if n >= 10 {
        i -= 2;
        if let (Some(to), Some(pair)) = (buf.get_mut(i..i + 2), PAIRS.get(2 * n..2 * n + 2)) {
            to.copy_from_slice(pair);
        }
    } else {
        i -= 1;
        if let Some(to) = buf.get_mut(i) {
            *to = b'0' + n as u8;
        }
    }
    buf.get(i..).unwrap_or(&[])
}

/// A float exactly as serde_json writes it: `null` when not finite, else the shortest
/// round-trip text of zmij, the formatter serde_json's serializer and `Number`'s display
/// call (`format_finite`), here without the fmt machinery around it.
fn write_f64(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// What serde_json's compact formatter writes for each byte inside a string: 0 = itself,
/// `u` = `\u00XX`, anything else = that letter after a backslash.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = b'u';
        c += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// A JSON string with serde_json's escaping: `"` and `\\` and control characters only; all
/// else (including non-ASCII and DEL) as is. Public for the adapters' own JSON (the Worker's log
/// lines).
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    write_escaped(s, out);
    out.push(b'"');
}

/// The inside of [`write_str`]: `s` with serde_json's escaping, without the quotes. A
/// string with nothing to escape (the common case) is one scan and one copy.
// Inlined in native builds (the scan runs in the caller, no call per string); the filter's
// .wasm keeps one copy.
#[cfg_attr(not(target_family = "wasm"), inline(always))]
fn write_escaped(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let first = plain_len(bytes);
    match bytes.get(..first) {
        Some(plain) if first < bytes.len() => {
            out.extend_from_slice(plain);
            write_escapes_from(bytes, first, out);
        }
        _ => out.extend_from_slice(bytes),
    }
}

/// The rest of [`write_escaped`] from `i`, the first byte that needs an escape.
#[inline(never)]
fn write_escapes_from(bytes: &[u8], mut i: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut run = i;
    while let Some(&b) = bytes.get(i) {
        out.extend_from_slice(bytes.get(run..i).unwrap_or(&[]));
        let esc = ESCAPE[usize::from(b)];
        if esc == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
        run = i + 1;
        i = plain_until(bytes, run);
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or(&[]));
}

/// [`plain_until`] from 0, sixteen bytes at a time first where the compiler turns the test
/// of a fixed-size block into vector compares (SSE2 and NEON are baseline there); the
/// eight-byte loop then finds the byte in the block that stopped it. For the writer's
/// strings (hashes, the User-Agent); the JSON selector's short keys keep the inlined
/// eight-byte scan.
#[cfg_attr(not(target_family = "wasm"), inline(always))]
fn plain_len(bytes: &[u8]) -> usize {
    #[allow(unused_mut)]
    let mut i = 0;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    while let Some(chunk) = bytes.get(i..i + 16) {
        let Ok(block) = <&[u8; 16]>::try_from(chunk) else {
            break;
        };
        let mut any = false;
        for &b in block {
            any |= (b < 0x20) | (b == b'"') | (b == b'\\');
        }
        if any {
            break;
        }
        i += 16;
    }
    plain_until(bytes, i)
}

/// The index of the first byte at or after `i` that must be escaped (`"`, `\`, a control
/// character) or the length, eight bytes at a time. The JSON selector skips strings with it.
#[cfg_attr(not(target_family = "wasm"), inline(always))]
pub(crate) fn plain_until(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES << 7;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let Ok(arr) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let v = u64::from_le_bytes(arr);
        // "Has a byte below n" tests; the lowest flagged byte is always exact.
        let ctrl = v.wrapping_sub(ONES * 0x20) & !v;
        let q = v ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let s = v ^ (ONES * u64::from(b'\\'));
        let backslash = s.wrapping_sub(ONES) & !s;
        let hit = (ctrl | quote | backslash) & HIGH;
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if ESCAPE[usize::from(b)] != 0 {
            return i;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::click_id::{ClickId, ClickIdName};
    use crate::event::{ConversionType, IdName, Identifier, Timestamp};
    use alloc::string::{String, ToString};
    use alloc::vec;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 ._-]{0,12}",
            "[\u{0}-\u{7f}]{0,16}",
            "[\"\\\\/\u{0}-\u{1f}\u{7f}é€😀\u{2028}a]{0,16}",
            any::<String>(),
        ]
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (0u64..10_000_000).prop_map(|c| c as f64 / 100.0),
            Just(0.0),
            Just(-0.0),
            Just(1e21),
            Just(1e-7),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(f64::NAN),
            Just(f64::INFINITY),
        ]
    }

    fn user_agent() -> impl Strategy<Value = UserAgent> {
        (
            (text(), text(), text(), text()),
            prop::sample::select(vec![
                DeviceType::Desktop,
                DeviceType::Mobile,
                DeviceType::Tablet,
                DeviceType::Bot,
                DeviceType::Unknown,
            ]),
            any::<bool>(),
            text(),
        )
            .prop_map(
                |(
                    (browser_name, browser_version, os_name, os_version),
                    device_type,
                    is_bot,
                    raw,
                )| {
                    UserAgent {
                        browser_name: browser_name.into(),
                        browser_version,
                        os_name: os_name.into(),
                        os_version: os_version.into(),
                        device_type,
                        is_bot,
                        raw,
                    }
                },
            )
    }

    fn event() -> impl Strategy<Value = ConversionEvent> {
        let id_name = prop::sample::select(vec![
            IdName::Guid,
            IdName::HashedEmail,
            IdName::Phone,
            IdName::HashedPhone,
            IdName::FirstPartyId,
        ]);
        let click_name = prop::sample::select(ClickIdName::ALL.to_vec());
        let conversion_type = prop_oneof![
            Just(ConversionType::Purchase),
            Just(ConversionType::PageView),
            Just(ConversionType::Signup),
            Just(ConversionType::Lead),
            text().prop_map(ConversionType::Custom),
        ];
        (
            (any::<u64>(), text(), conversion_type, text()),
            prop::collection::vec(
                (text(), id_name).prop_map(|(id, name)| Identifier { id, name }),
                0..4,
            ),
            prop::option::of(user_agent()),
            any::<i64>().prop_map(|t| t >> 8),
            prop::option::of(float()),
            (text(), prop::option::of(text())),
            prop::collection::vec(
                (text(), click_name).prop_map(|(id, name)| ClickId { id, name }),
                0..3,
            ),
            prop::option::of(text()),
        )
            .prop_map(
                |(
                    (advertiser_id, data_source_key, conversion_type, event_id),
                    ids,
                    user_agent,
                    t,
                    value,
                    (currency, order_id),
                    click_ids,
                    client_ip_address,
                )| ConversionEvent {
                    advertiser_id,
                    data_source_key,
                    conversion_type,
                    event_id,
                    ids,
                    user_agent,
                    timestamp: Timestamp(t),
                    value,
                    currency,
                    order_id,
                    click_ids,
                    client_ip_address,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The eight-at-a-time scan finds what a byte-by-byte scan finds.
        #[test]
        fn plain_until_is_the_byte_scan(
            bytes in prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    prop::sample::select(vec![b'"', b'\\', 0x1f, 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff]),
                ],
                0..40,
            ),
            from in 0usize..41,
        ) {
            let from = from.min(bytes.len());
            let want = (from..bytes.len())
                .find(|&i| matches!(bytes[i], b'"' | b'\\' | 0..=0x1f))
                .unwrap_or(bytes.len());
            prop_assert_eq!(plain_until(&bytes, from), want);
        }

        /// Two digits per step are the decimal text of any u64.
        #[test]
        fn decimal_is_to_string(n in prop_oneof![any::<u64>(), 0u64..1000, Just(u64::MAX), (0u32..20).prop_map(|k| 10u64.pow(k)), (1u32..20).prop_map(|k| 10u64.pow(k) - 1)]) {
            let mut buf = [0u8; 20];
            let want = n.to_string();
            prop_assert_eq!(decimal(n, &mut buf), want.as_bytes());
        }

        /// The sixteen-at-a-time start finds what a byte-by-byte scan finds.
        #[test]
        fn plain_len_is_the_byte_scan(
            bytes in prop::collection::vec(
                prop_oneof![
                    8 => prop::sample::select(vec![b'a', b'0', b' ', 0x7f, 0x80, 0xff, 0x21, 0x5b]),
                    1 => prop::sample::select(vec![b'"', b'\\', 0x00, 0x1f, 0x0a]),
                ],
                0..80,
            ),
        ) {
            let want = bytes
                .iter()
                .position(|&b| matches!(b, b'"' | b'\\' | 0..=0x1f))
                .unwrap_or(bytes.len());
            prop_assert_eq!(plain_len(&bytes), want);
        }

        #[test]
        fn one_event_is_byte_for_byte_serde_json(e in event()) {
            let mut out = Vec::new();
            SeedEncoder.encode(core::slice::from_ref(&e), &mut out);
            let want = serde_json::to_vec(&e).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&want));
        }

        #[test]
        fn a_batch_is_byte_for_byte_serde_json(events in prop::collection::vec(event(), 0..4)) {
            let mut out = b"prefix".to_vec();
            SeedEncoder.encode(&events, &mut out);
            let want = match events.as_slice() {
                [one] => serde_json::to_vec(one).unwrap(),
                many => serde_json::to_vec(many).unwrap(),
            };
            prop_assert_eq!(&out[..6], b"prefix");
            prop_assert_eq!(&out[6..], want.as_slice());
        }
    }

    /// Every fixed literal (id names, click-id names, device types with is_bot) against
    /// serde_json, not only the ones the proptests happen to pick.
    #[test]
    fn every_name_and_device_is_serde_json() {
        let names = [
            IdName::Guid,
            IdName::HashedEmail,
            IdName::Phone,
            IdName::HashedPhone,
            IdName::FirstPartyId,
        ];
        let devices = [
            DeviceType::Desktop,
            DeviceType::Mobile,
            DeviceType::Tablet,
            DeviceType::Bot,
            DeviceType::Unknown,
        ];
        for (k, name) in names.into_iter().enumerate() {
            let click = ClickIdName::ALL[k % ClickIdName::ALL.len()];
            let device = devices[k];
            for is_bot in [false, true] {
                let e = ConversionEvent {
                    advertiser_id: 7,
                    data_source_key: "k".into(),
                    conversion_type: ConversionType::Purchase,
                    event_id: "e".into(),
                    ids: vec![Identifier {
                        id: "a\"b".into(),
                        name,
                    }],
                    user_agent: Some(UserAgent {
                        browser_name: "b".into(),
                        browser_version: String::new(),
                        os_name: "o".into(),
                        os_version: "1".into(),
                        device_type: device,
                        is_bot,
                        raw: "r\n".into(),
                    }),
                    timestamp: Timestamp(0),
                    value: None,
                    currency: "EUR".into(),
                    order_id: None,
                    click_ids: ClickIdName::ALL
                        .iter()
                        .chain([&click])
                        .map(|&name| ClickId {
                            id: "c".into(),
                            name,
                        })
                        .collect(),
                    client_ip_address: None,
                };
                let mut out = Vec::new();
                write_event(&e, &mut out);
                assert_eq!(out, serde_json::to_vec(&e).unwrap());
            }
        }
    }

    #[test]
    fn every_byte_escapes_as_serde_json() {
        for b in 0u8..=0x7f {
            let s = String::from(char::from(b));
            let mut out = Vec::new();
            write_str(&s, &mut out);
            assert_eq!(out, serde_json::to_vec(&s).unwrap(), "byte {b:#x}");
        }
    }
}
