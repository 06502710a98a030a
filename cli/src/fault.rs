//! Fault injection for the sink: `status=503,retry_after=2,first=2`, `drop,fraction=0.3,seed=7`,
//! `delay=1500`. One action (`status=CODE` or `drop`) and/or `delay=MS`; scope `first=N` or
//! `fraction=F` (deterministic with `seed=S`, default 1); no scope means every request.

use std::fmt;

/// What a fault does when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Status { code: u16, retry_after: Option<u32> },
    Drop,
}

#[derive(Debug, Clone, PartialEq)]
enum Scope {
    Every,
    First(u64),
    Fraction { f: f64, state: u64 },
}

/// One fault and how many requests have reached it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    action: Option<Action>,
    delay_ms: u64,
    scope: Scope,
    reached: u64,
    spec: String,
}

/// The effect chosen for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub action: Option<Action>,
    pub delay_ms: u64,
    /// The fault's spec, for the log line.
    pub label: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Fault {
    /// Parses one SPEC. Errors name the offending key.
    pub fn parse<'a>(spec: &'a str) -> Result<Self, String> {
        let mut status: Option<u16> = None;
        let mut retry_after: Option<u32> = None;
        let mut drop = false;
        let mut delay: Option<u64> = None;
        let mut first: Option<u64> = None;
        let mut fraction: Option<f64> = None;
        let mut seed: Option<u64> = None;
        let mut seen: Vec<String> = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            let key_l = key.to_ascii_lowercase();
            if seen.contains(&key_l) {
                return Err(format!("{key_l}: given twice"));
            }
            seen.push(key_l.clone());
            let need = |v: Option<&'a str>| -> Result<&'a str, String> {
                v.ok_or_else(|| format!("{key_l}: expected {key_l}=VALUE"))
            };
            match key_l.as_str() {
                "drop" => {
                    if value.is_some() {
                        return Err("drop: takes no value".to_owned());
                    }
                    drop = true;
                }
                "status" => {
                    let code = need(value)?
                        .parse::<u16>()
                        .ok()
                        .filter(|c| (100..=599).contains(c));
                    status = Some(code.ok_or("status: expected an HTTP status from 100 to 599")?);
                }
                "retry_after" => {
                    retry_after = Some(
                        need(value)?
                            .parse::<u32>()
                            .map_err(|_| "retry_after: expected whole seconds")?,
                    );
                }
                "delay" => {
                    let ms = need(value)?.parse::<u64>().ok().filter(|ms| *ms <= 600_000);
                    delay = Some(ms.ok_or("delay: expected milliseconds from 0 to 600000")?);
                }
                "first" => {
                    first = Some(
                        need(value)?
                            .parse::<u64>()
                            .map_err(|_| "first: expected a count")?,
                    );
                }
                "fraction" => {
                    let f = need(value)?
                        .parse::<f64>()
                        .ok()
                        .filter(|f| (0.0..=1.0).contains(f));
                    fraction = Some(f.ok_or("fraction: expected a number from 0 to 1")?);
                }
                "seed" => {
                    seed = Some(
                        need(value)?
                            .parse::<u64>()
                            .map_err(|_| "seed: expected an integer")?,
                    );
                }
                _ => {
                    let shown = if key.len() <= 32
                        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        key
                    } else {
                        "?"
                    };
                    return Err(format!(
                        "unknown fault key {shown:?} (expected status, retry_after, drop, delay, first, fraction, seed)"
                    ));
                }
            }
        }
        let action = match (status, drop) {
            (Some(_), true) => return Err("give status=CODE or drop, not both".to_owned()),
            (Some(code), false) => Some(Action::Status { code, retry_after }),
            (None, true) => Some(Action::Drop),
            (None, false) => None,
        };
        if retry_after.is_some() && status.is_none() {
            return Err("retry_after: needs status=CODE".to_owned());
        }
        if action.is_none() && delay.is_none() {
            return Err("a fault needs status=CODE, drop or delay=MS".to_owned());
        }
        let scope = match (first, fraction) {
            (Some(_), Some(_)) => return Err("give first=N or fraction=F, not both".to_owned()),
            (Some(n), None) => Scope::First(n),
            (None, Some(f)) => Scope::Fraction {
                f,
                state: seed.unwrap_or(1),
            },
            (None, None) if seed.is_some() => return Err("seed: needs fraction=F".to_owned()),
            (None, None) => Scope::Every,
        };
        let canonical: Vec<&str> = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        Ok(Self {
            action,
            delay_ms: delay.unwrap_or(0),
            scope,
            reached: 0,
            spec: canonical.join(","),
        })
    }

    /// Counts a request reaching this fault and says whether the fault applies to it.
    fn applies(&mut self) -> bool {
        self.reached += 1;
        match &mut self.scope {
            Scope::Every => true,
            Scope::First(n) => self.reached <= *n,
            Scope::Fraction { f, state } => {
                let x = splitmix64(state) >> 11;
                (x as f64) / ((1u64 << 53) as f64) < *f
            }
        }
    }
}

/// Parses a fault list: one SPEC per non-empty line (the `POST /_sink/fault` body).
pub fn parse_list(text: &str) -> Result<Vec<Fault>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(Fault::parse)
        .collect()
}

/// The first fault that applies to this request, if any.
pub fn decide(faults: &mut [Fault]) -> Option<Applied> {
    faults.iter_mut().find_map(|f| {
        f.applies().then(|| Applied {
            action: f.action,
            delay_ms: f.delay_ms,
            label: f.spec.clone(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_scopes() {
        let mut fs = vec![
            Fault::parse("status=503, first=2").unwrap(),
            Fault::parse("delay=10").unwrap(),
        ];
        let a: Vec<_> = (0..4)
            .map(|_| decide(&mut fs).map(|a| (a.action, a.delay_ms)))
            .collect();
        let s503 = Some(Action::Status {
            code: 503,
            retry_after: None,
        });
        assert_eq!(
            a,
            vec![
                Some((s503, 0)),
                Some((s503, 0)),
                Some((None, 10)),
                Some((None, 10))
            ]
        );
        assert_eq!(Fault::parse("drop").unwrap().action, Some(Action::Drop));
        assert_eq!(
            Fault::parse("status=429,retry_after=1").unwrap().action,
            Some(Action::Status {
                code: 429,
                retry_after: Some(1)
            })
        );
        for bad in [
            "",
            "status=99",
            "drop,status=500",
            "retry_after=1,delay=5",
            "first=1",
            "status=500,first=1,fraction=0.5",
            "bogus=1",
            "status=500,status=501",
            "fraction=2,drop",
        ] {
            assert!(Fault::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fraction_is_deterministic() {
        let run = |seed: u64| {
            let mut fs = vec![Fault::parse(&format!("drop,fraction=0.5,seed={seed}")).unwrap()];
            (0..200)
                .map(|_| decide(&mut fs).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        let hits = run(3).iter().filter(|x| **x).count();
        assert!((60..140).contains(&hits), "{hits}");
    }
}
