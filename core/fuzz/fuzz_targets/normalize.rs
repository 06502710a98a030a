//! Identifier normalization on arbitrary text: never panics, every accepted value has the form
//! its identifier name promises, and normalizing a normalized value changes nothing.
#![no_main]

use capi_core::event::{IdName, Identifier};
use capi_core::normalize::{
    hash_email, is_sha256_hex, normalize_email, normalize_first_party_id, normalize_phone,
    parse_guid, percent_decode, phone_identifier, sha256_hex,
};
use libfuzzer_sys::fuzz_target;

fn valid(id: &str, name: IdName) {
    let ident = Identifier {
        id: id.to_owned(),
        name,
    };
    assert_eq!(ident.validate(), Ok(()), "{name:?} {id:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = core::str::from_utf8(data) else {
        return;
    };

    if let Ok(e) = normalize_email(s) {
        assert_eq!(
            normalize_email(&e),
            Ok(e.clone()),
            "normalize_email is idempotent"
        );
    }
    if let Ok(h) = hash_email(s) {
        valid(&h, IdName::HashedEmail);
        assert_eq!(
            hash_email(&h),
            Ok(h.clone()),
            "a hash passes through unchanged"
        );
        if !is_sha256_hex(s) {
            assert_eq!(normalize_email(s).map(|e| sha256_hex(e.as_bytes())), Ok(h));
        }
    }

    for cc in ["1", "44", "+49", ""] {
        if let Ok(digits) = normalize_phone(s, cc) {
            valid(&digits, IdName::Phone);
            let plus = format!("+{digits}");
            assert_eq!(
                normalize_phone(&plus, cc),
                Ok(digits.clone()),
                "+E.164 is a fixed point"
            );
            assert_eq!(
                normalize_phone(&plus, "7"),
                Ok(digits.clone()),
                "+E.164 ignores the default code"
            );
            let hashed = phone_identifier(s, cc, true).map(|i| i.id);
            assert_eq!(hashed, Ok(sha256_hex(digits.as_bytes())));
        }
        if let Ok(id) = phone_identifier(s, cc, true) {
            valid(&id.id, id.name);
        }
        if let Ok(id) = phone_identifier(s, cc, false) {
            valid(&id.id, id.name);
        }
    }

    if let Ok(g) = parse_guid(s) {
        valid(&g, IdName::Guid);
        assert_eq!(parse_guid(&g), Ok(g.clone()));
    }

    if let Ok(f) = normalize_first_party_id(s, 128) {
        assert!(f.len() <= 128);
        valid(&f, IdName::FirstPartyId);
        assert_eq!(normalize_first_party_id(&f, 128), Ok(f.clone()));
    }

    let _ = percent_decode(s, true);
    let _ = percent_decode(s, false);
});
