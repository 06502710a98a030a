//! ISO 4217 currency codes and their minor units.

/// ISO 4217 alphabetic codes with their minor-unit exponent, sorted by code (byte order) so
/// that [`minor_units`] can binary-search it.
///
/// Holds the national currencies of ISO 4217 list one, the fund codes (BOV, CHE, CHW, CLF,
/// COU, MXV, USN, UYI, UYW) and the CFA/CFP francs and East Caribbean dollar (XAF, XOF, XPF,
/// XCD). Left out are the codes whose minor unit ISO gives as "N.A." (gold, silver,
/// platinum, palladium XAU/XAG/XPT/XPD; the bond-market units XBA-XBD; XDR, XSU, XUA) and the
/// non-currencies XTS and XXX. A few codes withdrawn recently (ANG, BGN, CUC, SLL, ZWL) are
/// kept, since orders priced in them may still arrive.
const CODES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2), // replaced by XCG in 2025
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2), // replaced by EUR in 2026
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUC", 2), // no longer issued since 2021
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SLL", 2), // replaced by SLE (redenominated 1000:1)
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
    ("ZWL", 2), // replaced by ZWG in 2024
];

/// Returns the number of minor-unit digits of an active ISO 4217 code (upper case), or None
/// when the code is not in the list.
pub fn minor_units(code: &str) -> Option<u8> {
    // Three bytes as one big-endian number sort as the text does: no string compare per step.
    let want = match code.as_bytes() {
        [a, b, c] => u32::from_be_bytes([0, *a, *b, *c]),
        _ => return None,
    };
    TABLE
        .binary_search_by(|&entry| (entry >> 8).cmp(&want))
        .ok()
        .and_then(|i| TABLE.get(i))
        .map(|&entry| entry as u8)
}

/// [`CODES`] packed at compile time, in the same order: each code as a big-endian number
/// above its minor units (`code << 8 | units`). Only this table is in the binary, 4 bytes a
/// code, not the strings and slices of `CODES`.
static TABLE: [u32; CODES.len()] = {
    let mut table = [0u32; CODES.len()];
    let mut i = 0;
    while i < CODES.len() {
        let c = CODES[i].0.as_bytes();
        table[i] = u32::from_be_bytes([c[0], c[1], c[2], CODES[i].1]);
        i += 1;
    }
    table
};

/// True when `code` is an ISO 4217 currency code known to [`minor_units`]. The match is
/// exact: the caller upper-cases first, so "usd" is not a currency here.
pub fn is_currency(code: &str) -> bool {
    minor_units(code).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_strictly_sorted_so_binary_search_is_valid() {
        assert!(CODES.iter().all(|(c, _)| c.len() == 3));
        for pair in CODES.windows(2) {
            if let [(a, _), (b, _)] = pair {
                assert!(a < b, "{a} must sort before {b}");
            }
        }
    }

    #[test]
    fn table_entries_are_three_upper_case_letters_with_sane_exponents() {
        for &(code, units) in CODES {
            assert_eq!(code.len(), 3, "{code}");
            assert!(code.bytes().all(|b| b.is_ascii_uppercase()), "{code}");
            assert!(units <= 4, "{code}");
        }
        assert!(CODES.len() > 150);
    }

    #[test]
    fn every_entry_is_found() {
        for &(code, units) in CODES {
            assert_eq!(minor_units(code), Some(units), "{code}");
            assert!(is_currency(code));
        }
    }

    #[test]
    fn known_answers() {
        let cases = [
            ("USD", 2),
            ("EUR", 2),
            ("GBP", 2),
            ("JPY", 0),
            ("KRW", 0),
            ("ISK", 0),
            ("VND", 0),
            ("CLP", 0),
            ("PYG", 0),
            ("UGX", 0),
            ("XAF", 0),
            ("XOF", 0),
            ("XPF", 0),
            ("BHD", 3),
            ("KWD", 3),
            ("JOD", 3),
            ("OMR", 3),
            ("TND", 3),
            ("IQD", 3),
            ("LYD", 3),
            ("CLF", 4),
            ("UYW", 4),
            ("AED", 2),
            ("ZWG", 2),
            ("XCG", 2),
            ("SLE", 2),
            ("VES", 2),
        ];
        for (code, units) in cases {
            assert_eq!(minor_units(code), Some(units), "{code}");
        }
    }

    #[test]
    fn non_currencies_and_unknown_codes_are_rejected() {
        for code in [
            "XXX", "XTS", "XAU", "XAG", "XDR", "HRK", "DEM", "ABC", "", "US", "USDD", "EU",
        ] {
            assert_eq!(minor_units(code), None, "{code}");
            assert!(!is_currency(code), "{code}");
        }
    }

    #[test]
    fn lower_and_mixed_case_are_not_accepted() {
        for code in ["usd", "Usd", "eur", "jPY", " USD", "USD "] {
            assert_eq!(minor_units(code), None, "{code}");
            assert!(!is_currency(code));
        }
    }
}
