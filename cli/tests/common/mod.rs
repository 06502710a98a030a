//! Helpers for the CLI's integration tests: run the real `capi` binary, spawn its servers on
//! port 0 (killed by a Drop guard), and speak HTTP/1.1 (optionally over rustls) to them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_capi");

/// A fresh, empty directory for one test.
pub fn tmp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("capi-cli-tests")
        .join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts the bad-input contract: exit 2, exactly one line on stderr, no panic.
    pub fn assert_bad_input(&self) -> &str {
        assert_eq!(
            self.code, 2,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "expected one line on stderr, got: {:?}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "{}",
            self.stderr
        );
        self.stderr.trim_end()
    }
}

/// Kills the child when dropped, so a failing test leaves no process behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `capi` to completion (killed after 30 s), with optional stdin and environment.
pub fn capi(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Proc(cmd.spawn().unwrap());
    if let Some(input) = stdin {
        let mut sin = child.0.stdin.take().unwrap();
        // The child may exit (bad input) before reading stdin: a broken pipe is fine.
        let _ = sin.write_all(input);
    }
    let mut out_pipe = child.0.stdout.take().unwrap();
    let mut err_pipe = child.0.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "capi {args:?} did not finish within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// A running `capi sink` or `capi demo-shop`.
pub struct Server {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT` or `https://...`.
    pub url: String,
    pub port: u16,
    pub tls: bool,
    pub stderr_path: PathBuf,
    /// The CA to trust for a TLS server.
    pub ca: Option<PathBuf>,
}

/// Spawns `capi ARGS` and waits for its single listening line on stdout.
pub fn spawn_server(args: &[&str], dir: &Path) -> Server {
    let stderr_path = dir.join(format!("{}.stderr", args[0]));
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut child = Proc(
        Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    let url = line
        .trim()
        .rsplit_once(" listening on ")
        .map(|(_, u)| u.to_owned())
        .unwrap_or_else(|| {
            panic!(
                "no listening line from capi {args:?}: {line:?}; stderr: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        });
    let port: u16 = url.rsplit_once(':').unwrap().1.parse().unwrap();
    let tls = url.starts_with("https://");
    let ca = if tls {
        let dir = args
            .iter()
            .position(|a| *a == "--cert-dir")
            .map(|i| PathBuf::from(args[i + 1]))
            .unwrap();
        Some(dir.join("ca.pem"))
    } else {
        None
    };
    Server {
        proc: child,
        url,
        port,
        tls,
        stderr_path,
        ca,
    }
}

impl Server {
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        http(self.port, self.ca.as_deref(), method, path, headers, body)
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.request("GET", path, &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    pub fn set_fault(&self, spec: &str) {
        let r = self.request("POST", "/_sink/fault", &[], spec.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        self.get_json("/_sink/events").as_array().unwrap().clone()
    }

    pub fn stats(&self) -> serde_json::Value {
        self.get_json("/_sink/stats")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

/// Spawns a sink with `--port 0` and these extra arguments (TLS certificates go to `dir`).
pub fn spawn_sink(dir: &Path, tls: bool, extra: &[&str]) -> Server {
    let cert_dir = dir.join("certs");
    let cert_dir = cert_dir.to_str().unwrap().to_owned();
    let mut args = vec!["sink", "--port", "0", "--cert-dir", cert_dir.as_str()];
    if tls {
        args.push("--tls");
    }
    args.extend_from_slice(extra);
    spawn_server(&args, dir)
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The bytes as received (head and body, still chunked or compressed).
    pub raw: Vec<u8>,
    /// Number of chunks when the body came chunked.
    pub chunks: usize,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

fn tls_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// Sends raw bytes and reads until the server closes (or 10 s pass). Tolerates a TLS close
/// without close_notify and a reset after the data.
pub fn raw_exchange(port: u16, ca: Option<&Path>, request: &[u8]) -> Vec<u8> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let mut read_all = |s: &mut dyn Read| {
        let mut buf = [0u8; 16384];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    match ca {
        Some(ca) => {
            let conn =
                rustls::ClientConnection::new(tls_config(ca), "localhost".try_into().unwrap())
                    .unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            s.write_all(request).unwrap();
            s.flush().unwrap();
            read_all(&mut s);
        }
        None => {
            let mut s = tcp;
            s.write_all(request).unwrap();
            read_all(&mut s);
        }
    }
    out
}

/// Parses one HTTP/1.1 response (Content-Length, chunked, or until close).
pub fn parse_response(raw: Vec<u8>) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut chunks = 0;
    let body = if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut i = 0;
        loop {
            let line_end = i + rest[i..].windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[i..line_end]).unwrap().trim(), 16)
                    .unwrap();
            i = line_end + 2;
            if size == 0 {
                break;
            }
            chunks += 1;
            body.extend_from_slice(&rest[i..i + size]);
            i += size + 2;
        }
        body
    } else if let Some(n) = get("content-length") {
        let n: usize = n.parse().unwrap();
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
        raw,
        chunks,
    }
}

/// One request on its own connection (`Connection: close`).
pub fn http(
    port: u16,
    ca: Option<&Path>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost:{port}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    parse_response(raw_exchange(port, ca, &bytes))
}

/// The example configuration pointed at `url` with fast retries, as a file in `dir`.
/// `edit` may change anything else.
pub fn write_config(dir: &Path, url: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/config.json"
    ))
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&example).unwrap();
    v["destination"]["url"] = url.into();
    v["destination"]["timeout_ms"] = 3000.into();
    if url.starts_with("http://") {
        v["destination"]["allow_http_loopback"] = true.into();
    }
    v["retry"] = serde_json::json!({ "max_attempts": 6, "max_age_ms": 60000, "base_backoff_ms": 20, "max_backoff_ms": 200 });
    v["auth"] = serde_json::json!({ "bearer_token_env": "CAPI_TEST_TOKEN" });
    edit(&mut v);
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    path
}

pub const EVENT: &str = r#"{"conversion_type":"Purchase","order_id":"A-1","value":"12.50","currency":"eur","email":"Jane@Example.com","phone":"+1 (415) 555-2671","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"}"#;

/// sha256("jane@example.com")
pub const JANE_EMAIL_SHA: &str = "8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d";
/// sha256("14155552671")
pub const JANE_PHONE_SHA: &str = "758fbf68945f21c416814c539ab578876c8d98fb69e6da692def92cd52417fe0";

pub fn write_event(dir: &Path, json: &str) -> PathBuf {
    let path = dir.join("event.json");
    std::fs::write(&path, json).unwrap();
    path
}

/// `url` with the host replaced by `localhost` (the certificate's name).
pub fn localhost(url: &str) -> String {
    url.replace("127.0.0.1", "localhost")
}
