//! PluginConfig::from_json on arbitrary bytes: never panics, and an accepted configuration is
//! usable (its rules match and its secrets resolve).
#![no_main]

use capi_core::PluginConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut config) = PluginConfig::from_json(data) else {
        return;
    };
    let _ = config.match_request("POST", "shop.example", "/api/checkout");
    let _ = config.match_request("GET", "", "/forms/x/submit?a=b");
    assert!(
        config
            .resolve_secrets(|_| Some("secret".to_owned()))
            .is_ok(),
        "every *_env secret resolves when the lookup always answers"
    );
});
