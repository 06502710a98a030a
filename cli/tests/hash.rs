//! `capi hash`: known answers, pass-through of existing hashes, stdin, and bad input.
// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{JANE_EMAIL_SHA, JANE_PHONE_SHA, capi};

fn hash(args: &[&str]) -> String {
    let out = capi(args, None, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    out.stdout.trim_end().to_owned()
}

#[test]
fn email_known_answers() {
    for v in [
        "jane@example.com",
        "  Jane@Example.COM ",
        "JANE@EXAMPLE.COM",
    ] {
        assert_eq!(hash(&["hash", "email", v]), JANE_EMAIL_SHA, "{v}");
    }
}

#[test]
fn phone_known_answers() {
    for v in [
        "+1 (415) 555-2671",
        "415-555-2671",
        "14155552671",
        "001 415 555 2671",
    ] {
        assert_eq!(hash(&["hash", "phone", v]), JANE_PHONE_SHA, "{v}");
    }
    // sha256("442079460958"): a UK number with its national trunk 0 dropped.
    let uk = "35e206e5dec4c89b9e8b71b8c32724a5bb518483ac5a20c6617d738375b3b823";
    assert_eq!(
        hash(&["hash", "phone", "020 7946 0958", "--calling-code", "44"]),
        uk
    );
    assert_eq!(
        hash(&["hash", "phone", "--calling-code", "+44", "+44 20 7946 0958"]),
        uk
    );
}

#[test]
fn existing_hashes_pass_through_lower_cased() {
    let upper = JANE_EMAIL_SHA.to_ascii_uppercase();
    assert_eq!(hash(&["hash", "email", &upper]), JANE_EMAIL_SHA);
    assert_eq!(hash(&["hash", "phone", &upper]), JANE_EMAIL_SHA);
}

#[test]
fn value_from_stdin() {
    let out = capi(&["hash", "email", "-"], Some(b"Jane@Example.com\n"), &[]);
    assert_eq!((out.code, out.stdout.trim_end()), (0, JANE_EMAIL_SHA));
    let out = capi(&["hash", "phone", "-"], Some(b"+1 415 555 2671\n"), &[]);
    assert_eq!((out.code, out.stdout.trim_end()), (0, JANE_PHONE_SHA));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let line = capi(&["hash", "email", "not-an-email"], None, &[])
        .assert_bad_input()
        .to_owned();
    assert!(
        line.contains("email") && !line.contains("not-an-email"),
        "{line}"
    );
    let line = capi(&["hash", "phone", "call me maybe"], None, &[])
        .assert_bad_input()
        .to_owned();
    assert!(line.contains("phone"), "{line}");
    let line = capi(
        &["hash", "phone", "4155552671", "--calling-code", "abc"],
        None,
        &[],
    )
    .assert_bad_input()
    .to_owned();
    assert!(line.contains("--calling-code"), "{line}");
    capi(&["hash", "sha1", "x"], None, &[]).assert_bad_input();
    capi(&["hash", "email"], None, &[]).assert_bad_input();
    capi(&["hash"], None, &[]).assert_bad_input();
    capi(&[], None, &[]).assert_bad_input();
    capi(&["frobnicate"], None, &[]).assert_bad_input();
    capi(&["hash", "email", "-"], Some(b"\xff\xfe\n"), &[]).assert_bad_input();
}

#[test]
fn help_is_not_an_error() {
    let out = capi(&["--help"], None, &[]);
    assert_eq!(out.code, 0);
    for cmd in [
        "hash",
        "validate-config",
        "build",
        "send",
        "sink",
        "demo-shop",
    ] {
        assert!(out.stdout.contains(cmd), "{cmd} missing from --help");
    }
}
