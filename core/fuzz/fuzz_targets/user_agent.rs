//! parse_user_agent on arbitrary text: never panics, keeps a bounded prefix of its input, and
//! parsing what it kept gives the same answer.
#![no_main]

use capi_core::user_agent::{DeviceType, MAX_USER_AGENT_LEN, parse_user_agent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = core::str::from_utf8(data) else {
        return;
    };
    let ua = parse_user_agent(raw);
    assert!(ua.raw.len() <= MAX_USER_AGENT_LEN);
    assert!(
        raw.starts_with(ua.raw.as_str()),
        "raw is a prefix of the input"
    );
    assert_eq!(ua.is_bot, ua.device_type == DeviceType::Bot);
    assert_eq!(
        parse_user_agent(&ua.raw),
        ua,
        "parsing the kept prefix again changes nothing"
    );
});
