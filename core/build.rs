//! Generates `lowercase.rs` in OUT_DIR: the tables of `crate::lowercase`, read off this very
//! toolchain's std (`char::to_lowercase`, `str::to_lowercase`), so that the core lower-cases
//! exactly as `str::to_lowercase` does, with tables a fraction of the size of core's own
//! (see src/lowercase.rs).

use std::error::Error;
use std::fmt::Write as _;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo::rerun-if-changed=build.rs");
    let mut out = String::new();

    // Non-ASCII characters whose lower case is one other character: runs of (start, count,
    // step 1 or 2, delta), every step-th character from start maps to itself + delta, and in
    // a step-2 run the characters in between map to themselves.
    let mut maps: Vec<(u32, i64)> = Vec::new();
    let mut multi: Vec<(char, String)> = Vec::new();
    for c in (0x80..=0x10FFFFu32).filter_map(char::from_u32) {
        let lower: Vec<char> = c.to_lowercase().collect();
        match lower.as_slice() {
            [l] if *l == c => {}
            [l] => maps.push((c as u32, i64::from(*l as u32) - i64::from(c as u32))),
            _ => multi.push((c, lower.iter().collect())),
        }
    }
    let mapped = |c: u32| maps.binary_search_by_key(&c, |m| m.0).is_ok();
    let mut runs: Vec<u64> = Vec::new();
    let mut i = 0;
    while i < maps.len() {
        let (start, delta) = maps[i];
        let step = match maps.get(i + 1) {
            Some(&(n, d)) if d == delta && n == start + 2 && !mapped(start + 1) => 2,
            _ => 1,
        };
        let mut count = 1u32;
        let mut j = i + 1;
        while let Some(&(n, d)) = maps.get(j) {
            let next = start + count * step;
            if d != delta || n != next || (step == 2 && mapped(next - 1)) || count == 0x7ff {
                break;
            }
            count += 1;
            j += 1;
        }
        // start: 21 bits, count: 11 bits, step - 1: 1 bit, delta + 2^21: 22 bits.
        let d = u64::try_from(delta + (1 << 21))?;
        runs.push(u64::from(start) | u64::from(count) << 21 | u64::from(step - 1) << 32 | d << 33);
        i = j;
    }
    writeln!(out, "const LOWER_RUNS: [u64; {}] = {runs:?};", runs.len())?;
    writeln!(
        out,
        "const LOWER_MULTI: [(char, &str); {}] = {multi:?};",
        multi.len()
    )?;

    // Final sigma: what `str::to_lowercase` needs to know of every character, probed through
    // it: 1 = case-ignorable, 2 = cased (and not case-ignorable), 0 = neither. "AΣc" keeps σ
    // when c is cased and not case-ignorable; "AΣcA" keeps σ when c is either.
    let mut class_runs: Vec<u8> = Vec::new();
    let (mut prev, mut len) = (0u32, 0u32);
    let mut push = |class: u32, len: u32| {
        // LEB128 of len << 2 | class.
        let mut v = len << 2 | class;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                class_runs.push(b);
                break;
            }
            class_runs.push(b | 0x80);
        }
    };
    for cp in 0..=0x10FFFFu32 {
        let class = match char::from_u32(cp) {
            None => prev,
            Some(c) => {
                let p1 = format!("AΣ{c}").to_lowercase().chars().nth(1);
                let p2 = format!("AΣ{c}A").to_lowercase().chars().nth(1);
                match (p1, p2) {
                    (Some('σ'), _) => 2,
                    (_, Some('σ')) => 1,
                    _ => 0,
                }
            }
        };
        if class != prev && len > 0 {
            push(prev, len);
            len = 0;
        }
        prev = class;
        len += 1;
    }
    push(prev, len);
    writeln!(
        out,
        "const CASE_CLASS_RUNS: [u8; {}] = {class_runs:?};",
        class_runs.len()
    )?;

    let dir = std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?;
    std::fs::write(std::path::Path::new(&dir).join("lowercase.rs"), out)?;
    Ok(())
}
