//! `cargo xtask demo`: one purchase from examples/purchase.json, built and sent by the `capi`
//! CLI to a local TLS sink, then what the sink received.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::sh::{Res, Sh, err};

const TOKEN: &str = "demo-token";
const SINK_BANNER: &str = "capi sink listening on ";

pub fn run(sh: &Sh) -> Res {
    sh.run(sh.cargo().args(["build", "-p", "capi-cli"]))?;
    let capi = sh.target_dir().join("debug/capi");
    let dir = sh.target_dir().join("demo");
    std::fs::create_dir_all(&dir)?;
    let record = dir.join("events.jsonl");
    match std::fs::remove_file(&record) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let sink = Sink::start(sh, &capi, &record, &dir.join("sink-tls"))?;
    println!("sink: {} (CA {})", sink.base_url, sink.ca.display());

    let config = dir.join("config.json");
    let example = std::fs::read_to_string(sh.root.join("examples/config.json"))?;
    std::fs::write(&config, rewrite_url(&example, &sink.base_url)?)?;

    deliver(sh, &capi, &config, &sink)?;
    show_received(sh, &sink, &record)?;
    drop(sink);
    println!("demo: done (sink stopped)");
    Ok(())
}

/// Gets the example event to the sink. For now the CLI builds and sends it; REPLACE this with
/// the Envoy run (shop behind Envoy + the filter, one checkout through it) once it exists.
fn deliver(sh: &Sh, capi: &Path, config: &Path, sink: &Sink) -> Res {
    let event = sh.root.join("examples/purchase.json");
    let cli = |sub: &str| {
        let mut c = sh.cmd(capi);
        c.arg(sub)
            .arg("--config")
            .arg(config)
            .arg("--event")
            .arg(&event)
            .env("CAPI_TOKEN", TOKEN);
        c
    };
    println!("\n--- the request `capi build` makes (secrets masked):");
    sh.run(&mut cli("build"))?;
    println!("\n--- `capi send` to the sink:");
    sh.run(cli("send").arg("--ca").arg(&sink.ca))
}

fn show_received(sh: &Sh, sink: &Sink, record: &Path) -> Res {
    println!("\n--- what the sink received (GET /_sink/events):");
    let url = format!("{}/_sink/events", sink.base_url);
    if sh.probe(sh.cmd("curl").arg("--version")) {
        let mut c = sh.cmd("curl");
        c.args(["-sS", "--fail", "--cacert"]).arg(&sink.ca).args([
            "-H",
            &format!("authorization: Bearer {TOKEN}"),
            &url,
        ]);
        println!("{}", sh.read(&mut c)?.trim_end());
    } else {
        println!(
            "(curl is not installed: showing the sink's record file {} instead)",
            record.display()
        );
        println!("{}", std::fs::read_to_string(record)?.trim_end());
    }
    Ok(())
}

/// `capi sink --tls` running in the background; killed when dropped.
struct Sink {
    child: Child,
    base_url: String,
    ca: PathBuf,
}

impl Sink {
    fn start(sh: &Sh, capi: &Path, record: &Path, cert_dir: &Path) -> Res<Self> {
        let mut c = sh.cmd(capi);
        c.args(["sink", "--tls", "--port", "0", "--token", TOKEN, "--record"])
            .arg(record)
            .arg("--cert-dir")
            .arg(cert_dir);
        println!(
            "$ {} sink --tls --port 0 --token {TOKEN} --record {} --cert-dir {} &",
            capi.display(),
            record.display(),
            cert_dir.display()
        );
        let mut child = c.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| err("sink: no stdout"))?;
        let (tx, rx) = mpsc::channel();
        // First line to us, the rest echoed (and drained, so the sink never blocks on stdout).
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            if let Some(first) = lines.next() {
                let _ = tx.send(first);
            }
            for line in lines {
                println!("  sink| {line}");
            }
        });
        let mut sink = Sink {
            child,
            base_url: String::new(),
            ca: cert_dir.join("ca.pem"),
        };
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| err("sink exited or printed nothing within 30s"))?;
        let url = first
            .strip_prefix(SINK_BANNER)
            .ok_or_else(|| err(format!("sink: unexpected first line {first:?}")))?;
        sink.base_url = url.trim().trim_end_matches('/').to_owned();
        if !sink.ca.is_file() {
            return Err(err(format!("sink: no CA at {}", sink.ca.display())));
        }
        Ok(sink)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Points the configuration's `destination.url` at `base` (scheme://host:port), keeping its
/// path: `"url": "https://127.0.0.1:9443/v1/conversions"` → `"url": "https://127.0.0.1:PORT/v1/conversions"`.
fn rewrite_url(config: &str, base: &str) -> Res<String> {
    let key = config
        .find("\"url\"")
        .ok_or_else(|| err("config: no \"url\""))?;
    let open = key
        + 5
        + config[key + 5..]
            .find('"')
            .ok_or_else(|| err("config: url is not a string"))?
        + 1;
    let close = open
        + config[open..]
            .find('"')
            .ok_or_else(|| err("config: unterminated url"))?;
    let url = &config[open..close];
    let after_scheme = url
        .find("://")
        .ok_or_else(|| err("config: url has no scheme"))?
        + 3;
    let path = url[after_scheme..]
        .find('/')
        .map_or("", |i| &url[after_scheme + i..]);
    Ok(format!(
        "{}{base}{path}{}",
        &config[..open],
        &config[close..]
    ))
}

#[cfg(test)]
mod tests {
    use super::rewrite_url;

    #[test]
    fn rewrites_only_the_authority() {
        let cfg = r#"{"destination": {"format": "seed", "url": "https://127.0.0.1:9443/v1/conversions", "x": "y"}}"#;
        let out = rewrite_url(cfg, "https://127.0.0.1:40001").unwrap();
        assert_eq!(
            out,
            r#"{"destination": {"format": "seed", "url": "https://127.0.0.1:40001/v1/conversions", "x": "y"}}"#
        );
    }
}
