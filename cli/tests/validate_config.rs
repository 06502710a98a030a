//! `capi validate-config`: the example passes; errors name the field path on one line.
// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{capi, tmp_dir};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/config.json");

#[test]
fn example_config_is_ok() {
    let out = capi(&["validate-config", EXAMPLE], None, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim_end(), "ok: 3 rules");
}

#[test]
fn stdin_works() {
    let text = std::fs::read(EXAMPLE).unwrap();
    let out = capi(&["validate-config", "-"], Some(&text), &[]);
    assert_eq!(
        (out.code, out.stdout.trim_end()),
        (0, "ok: 3 rules"),
        "{}",
        out.stderr
    );
}

fn with_edit(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(EXAMPLE).unwrap()).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn errors_name_the_field() {
    let bad = with_edit(|v| v["rules"][0]["extract"]["value"] = "response:order/total".into());
    let line = capi(&["validate-config", "-"], Some(&bad), &[])
        .assert_bad_input()
        .to_owned();
    assert!(
        line.contains("rules[0].extract.value: expected a JSON pointer"),
        "{line}"
    );

    let bad = with_edit(|v| v["destination"]["url"] = "http://capi.example.com/v1".into());
    let line = capi(&["validate-config", "-"], Some(&bad), &[])
        .assert_bad_input()
        .to_owned();
    assert!(line.contains("destination.url"), "{line}");

    let bad = with_edit(|v| v["surprise"] = 1.into());
    capi(&["validate-config", "-"], Some(&bad), &[]).assert_bad_input();
}

#[test]
fn unreadable_or_invalid_files() {
    let dir = tmp_dir("validate");
    let missing = dir.join("missing.json");
    let line = capi(&["validate-config", missing.to_str().unwrap()], None, &[])
        .assert_bad_input()
        .to_owned();
    assert!(line.contains("missing.json"), "{line}");
    let line = capi(&["validate-config", "-"], Some(b"{ not json"), &[])
        .assert_bad_input()
        .to_owned();
    assert!(line.contains("not valid JSON"), "{line}");
    capi(&["validate-config", "-"], Some(b""), &[]).assert_bad_input();
    capi(&["validate-config"], None, &[]).assert_bad_input();
}
