//! Property tests: round trips, idempotence, no double hashing, no panics on any bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use capi_core::click_id::{ClickId, ClickIdName};
use capi_core::config::EXAMPLE_CONFIG;
use capi_core::event::{ConversionType, IdName, Identifier, Timestamp};
use capi_core::normalize::{
    self, hash_email, is_sha256_hex, normalize_email, normalize_phone, sha256_hex,
};
use capi_core::user_agent::parse_user_agent;
use capi_core::{ConversionEvent, Exchange, PluginConfig, collect_event, extract_event};
use proptest::prelude::*;

fn id_strategy() -> impl Strategy<Value = Identifier> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(|b| Identifier {
            id: normalize::hex(&b),
            name: IdName::HashedEmail
        }),
        any::<[u8; 32]>().prop_map(|b| Identifier {
            id: normalize::hex(&b),
            name: IdName::HashedPhone
        }),
        "[1-9][0-9]{7,14}".prop_map(|d| Identifier {
            id: d,
            name: IdName::Phone
        }),
        any::<[u8; 16]>().prop_map(|b| Identifier {
            id: normalize::uuid_v4_from_bytes(b),
            name: IdName::Guid
        }),
        "[a-zA-Z0-9_]{1,40}".prop_map(|s| Identifier {
            id: s,
            name: IdName::FirstPartyId
        }),
    ]
}

fn event_strategy() -> impl Strategy<Value = ConversionEvent> {
    (
        any::<u64>(),
        "[a-z0-9-]{1,20}",
        prop_oneof![
            Just(ConversionType::Purchase),
            Just(ConversionType::PageView),
            Just(ConversionType::Signup),
            Just(ConversionType::Lead),
            "[A-Za-z][A-Za-z ]{0,20}[a-z]".prop_map(ConversionType::Custom)
        ],
        prop::collection::vec(id_strategy(), 1..5),
        proptest::option::of(".{0,120}"),
        -10_000_000_000_000i64..10_000_000_000_000,
        proptest::option::of(prop_oneof![
            0.0f64..1e12,
            (0u64..10_000_000).prop_map(|c| c as f64 / 100.0)
        ]),
        prop::sample::select(vec!["USD", "EUR", "JPY", "KWD", "GBP"]),
        proptest::option::of("[A-Za-z0-9-]{1,30}"),
        prop::sample::subsequence(ClickIdName::ALL.to_vec(), 0..3),
        "[A-Za-z0-9._~=+-]{1,40}",
        proptest::option::of(prop_oneof![
            any::<[u8; 4]>().prop_map(|b| std::net::IpAddr::from(b).to_string()),
            any::<[u16; 8]>().prop_map(|b| std::net::IpAddr::from(b).to_string()),
        ]),
    )
        .prop_map(
            |(adv, dsk, ct, ids, ua, ts, value, cur, order, clicks, click, ip)| {
                let conversion_type = match ct {
                    ConversionType::Custom(s) if ConversionType::parse(&s).is_none() => {
                        ConversionType::Lead
                    }
                    ConversionType::Custom(s) => {
                        ConversionType::parse(&s).unwrap_or(ConversionType::Lead)
                    }
                    other => other,
                };
                ConversionEvent {
                    advertiser_id: adv,
                    data_source_key: dsk,
                    conversion_type,
                    event_id: sha256_hex(&ts.to_le_bytes()),
                    ids,
                    user_agent: ua.map(|u| parse_user_agent(&u)),
                    timestamp: Timestamp(ts),
                    value,
                    currency: cur.to_string(),
                    order_id: order,
                    click_ids: clicks
                        .into_iter()
                        .map(|name| ClickId {
                            id: click.clone(),
                            name,
                        })
                        .collect(),
                    client_ip_address: ip,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn serialize_parse_round_trip(e in event_strategy()) {
        let bytes = e.to_json();
        let back = ConversionEvent::from_json(&bytes).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(back.to_json(), bytes);
    }

    #[test]
    fn email_normalization_is_idempotent(local in "[A-Za-z0-9._+-]{1,20}", domain in "[A-Za-z0-9-]{1,12}\\.[A-Za-z]{2,6}", pad in "[ \t]{0,3}") {
        let raw = format!("{pad}{local}@{domain}{pad}");
        if let Ok(n) = normalize_email(&raw) {
            prop_assert_eq!(normalize_email(&n).unwrap(), n.clone());
            prop_assert_eq!(hash_email(&raw).unwrap(), sha256_hex(n.as_bytes()));
        }
    }

    #[test]
    fn phone_normalization_is_idempotent(raw in "[+]?[0-9 ().-]{0,24}", cc in "[1-9][0-9]{0,2}") {
        if let Ok(d) = normalize_phone(&raw, &cc) {
            prop_assert!(d.bytes().all(|b| b.is_ascii_digit()));
            prop_assert_eq!(normalize_phone(&format!("+{d}"), &cc).unwrap(), d.clone());
            prop_assert_eq!(normalize_phone(&format!("00{d}"), "99").unwrap(), d);
        }
    }

    #[test]
    fn a_hash_is_never_hashed_again(bytes in any::<[u8; 32]>(), upper in any::<bool>(), pad in "[ ]{0,2}") {
        let h = normalize::hex(&bytes);
        let shown = if upper { h.to_ascii_uppercase() } else { h.clone() };
        let input = format!("{pad}{shown}{pad}");
        prop_assert!(is_sha256_hex(&input));
        prop_assert_eq!(hash_email(&input).unwrap(), h.clone());
        let p = normalize::phone_identifier(&input, "1", false).unwrap();
        prop_assert_eq!((p.id, p.name), (h, IdName::HashedPhone));
    }

    #[test]
    fn extraction_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..600), req in prop::collection::vec(any::<u8>(), 0..300), cookie in ".{0,80}", ua in ".{0,200}", path in ".{0,60}") {
        let c = PluginConfig::from_json(EXAMPLE_CONFIG.as_bytes()).unwrap();
        let headers = vec![("cookie".to_string(), cookie), ("user-agent".to_string(), ua)];
        for rule in &c.rules {
            let ex = Exchange { method: "POST", host: "h", path: &path, request_headers: &headers, request_body: Some(&req), response_status: 200, response_headers: &[], response_body: Some(&body), client_ip: Some(&path) };
            let _ = extract_event(&c, rule, &ex, 0);
        }
        let _ = collect_event(&c, &body, &headers, None, 0);
        let _ = PluginConfig::from_json(&body);
        let _ = ConversionEvent::from_json(&body);
    }

    #[test]
    fn extraction_of_json_shaped_bodies_never_panics(total in prop_oneof![Just(serde_json::Value::Null), any::<f64>().prop_map(serde_json::Value::from), ".{0,12}".prop_map(serde_json::Value::from), any::<i64>().prop_map(serde_json::Value::from)], email in ".{0,30}", cur in ".{0,5}") {
        let c = PluginConfig::from_json(EXAMPLE_CONFIG.as_bytes()).unwrap();
        let body = serde_json::json!({"order": {"id": "1", "total": total, "currency": cur}, "customer": {"email": email}}).to_string();
        let ex = Exchange { method: "POST", path: "/api/checkout", response_status: 200, response_body: Some(body.as_bytes()), ..Exchange::default() };
        if let Ok(out) = extract_event(&c, &c.rules[0], &ex, 0) {
            prop_assert!(out.event.validate().is_ok(), "extracted events are always valid: {:?}", out.event.validate());
        }
    }
}
