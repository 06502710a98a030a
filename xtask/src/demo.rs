//! `cargo xtask demo`: the main job end to end in a real Envoy. The repository's envoy.yaml runs
//! as is in front of `capi demo-shop`, with the filter delivering to a local `capi sink --tls`;
//! a few shop requests go through Envoy, then the demo shows what the sink received and Envoy's
//! `wasmcustom.capi.*` counters. Everything it starts is stopped when it ends, however it ends.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::filter::{self, FILTER_WASM};
use crate::setup;
use crate::sh::{Res, Sh, err, fmt_duration};

const TOKEN: &str = "demo-token";
/// The fixed ports of envoy.yaml (and of the sink and shop it points at).
const SINK_PORT: u16 = 9443;
const SHOP_PORT: u16 = 18080;
const LISTENER_PORT: u16 = 10000;
const ADMIN_PORT: u16 = 9901;
/// Where envoy.yaml loads the filter from and which CA it trusts (relative to the repo root).
const YAML_WASM: &str = "target/wasm32-wasip1/filter/capi_proxy_wasm_filter.wasm";
const SINK_CERT_DIR: &str = "target/capi-sink";

const SERVER_START_LIMIT: Duration = Duration::from_secs(30);
const ENVOY_READY_LIMIT: Duration = Duration::from_secs(60);
const EVENTS_LIMIT: Duration = Duration::from_secs(10);
/// After the expected events arrived: how long to keep listening for unexpected ones.
const SETTLE: Duration = Duration::from_secs(1);
const STOP_GRACE: Duration = Duration::from_secs(5);

const SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.1 Safari/605.1.15";

pub fn run(sh: &Sh) -> Res {
    setup::ensure_targets(sh, &["wasm32-wasip1"])?;
    let envoy = setup::ensure_envoy(sh)?;
    filter::build(sh)?;
    sh.run(sh.cargo().args(["build", "-p", "capi-cli"]))?;

    let target = sh.target_dir();
    let capi = target.join("debug/capi");
    let dir = target.join("demo");
    std::fs::create_dir_all(&dir)?;
    let record = dir.join("events.jsonl");
    remove_if_exists(&record)?;
    let (config, yaml) = envoy_config(sh, &dir)?;
    let rules = plugin_rules(&yaml)?;
    let requests = plan(&rules)?;
    for (port, who) in [
        (SINK_PORT, "capi sink"),
        (SHOP_PORT, "capi demo-shop"),
        (LISTENER_PORT, "the Envoy listener"),
        (ADMIN_PORT, "the Envoy admin"),
    ] {
        ensure_port_free(port, who)?;
    }

    println!(
        "\n--- starting the sink, the shop and Envoy (logs in {})",
        dir.display()
    );
    let mut procs = Procs::new(sh);
    let sink_log = dir.join("sink.log");
    let mut c = sh.cmd(&capi);
    c.args([
        "sink",
        "--tls",
        "--port",
        &SINK_PORT.to_string(),
        "--token",
        TOKEN,
    ])
    .arg("--record")
    .arg(&record);
    procs.start_server(sh, "sink", c, &sink_log, "capi sink listening on ")?;
    let ca = sh.root.join(SINK_CERT_DIR).join("ca.pem");
    if !ca.is_file() {
        return Err(err(format!("sink: no CA at {}", ca.display())));
    }
    let mut c = sh.cmd(&capi);
    c.args(["demo-shop", "--log", "--port", &SHOP_PORT.to_string()]);
    let shop_log = dir.join("shop.log");
    procs.start_server(sh, "shop", c, &shop_log, "capi demo-shop listening on ")?;
    let envoy_log = dir.join("envoy.log");
    let mut c = sh.cmd(&envoy);
    c.arg("-c")
        .arg(&config)
        .args(["--concurrency", "1", "--use-dynamic-base-id"])
        .env("CAPI_TOKEN", TOKEN);
    procs.start_envoy(sh, c, &envoy_log)?;

    println!("\n--- requests through Envoy (http://127.0.0.1:{LISTENER_PORT}), client's view:");
    let mut failed_requests = 0;
    for r in &requests {
        let label = format!("{} {}", r.method, r.path);
        match http(
            LISTENER_PORT,
            r.method,
            &r.path,
            &r.headers,
            r.body.as_bytes(),
        ) {
            Ok(resp) => {
                if resp.status != 200 {
                    failed_requests += 1;
                }
                println!(
                    "  {label:<26} {:<34} -> {} {} ({} bytes)",
                    r.note,
                    resp.status,
                    resp.content_type,
                    resp.body.len()
                );
            }
            Err(e) => {
                failed_requests += 1;
                println!("  {label:<26} {:<34} -> FAILED: {e}", r.note);
            }
        }
    }

    let expected: Vec<&Expect> = requests.iter().filter_map(|r| r.expect.as_ref()).collect();
    let source = if sh.probe(sh.cmd("curl").arg("--version")) {
        Source::Curl { ca }
    } else {
        Source::Record(record.clone())
    };
    println!(
        "\n--- waiting (up to {}s) for {} conversions at the sink: {}",
        EVENTS_LIMIT.as_secs(),
        expected.len(),
        source.describe()
    );
    let t = Instant::now();
    let events = wait_for_events(&source, expected.len())?;
    let check = Check::new(&expected, &events);
    println!(
        "--- the sink received {} conversion(s) in {}:",
        events.len(),
        fmt_duration(t.elapsed())
    );
    for (e, verdict) in events.iter().zip(&check.verdicts) {
        println!("  {}{verdict}", summarize(e));
    }

    println!(
        "\n--- Envoy's capi counters (GET 127.0.0.1:{ADMIN_PORT}/stats?filter=wasmcustom.capi):"
    );
    match http(ADMIN_PORT, "GET", "/stats?filter=wasmcustom.capi", &[], b"") {
        Ok(resp) => print_counters(&String::from_utf8_lossy(&resp.body)),
        Err(e) => println!("  (admin stats failed: {e})"),
    }

    println!("\n--- stopping what the demo started");
    drop(procs);

    let mut problems = Vec::new();
    if failed_requests > 0 {
        problems.push(format!(
            "{failed_requests} request(s) through Envoy did not answer 200"
        ));
    }
    if !check.missing.is_empty() {
        problems.push(format!("missing at the sink: {}", check.missing.join(", ")));
    }
    if check.unexpected > 0 {
        problems.push(format!(
            "{} conversion(s) the demo's requests should not have produced",
            check.unexpected
        ));
    }
    if problems.is_empty() {
        let others = requests.iter().filter(|r| r.expect.is_none()).count();
        println!(
            "demo: ok: {} of {} expected conversions reached the sink through Envoy, the {others} \
             other request(s) produced none",
            events.len(),
            expected.len()
        );
        Ok(())
    } else {
        Err(err(format!(
            "demo FAILED: {} (logs in {})",
            problems.join("; "),
            dir.display()
        )))
    }
}

fn remove_if_exists(path: &Path) -> Res {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// The Envoy config to run and its text: the repository's envoy.yaml as is, or, when
/// CARGO_TARGET_DIR puts the build elsewhere, a copy that loads the filter from there.
fn envoy_config(sh: &Sh, dir: &Path) -> Res<(PathBuf, String)> {
    let path = sh.root.join("envoy.yaml");
    let yaml =
        std::fs::read_to_string(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let built = sh.target_dir().join(FILTER_WASM);
    if built == sh.root.join(YAML_WASM) {
        return Ok((PathBuf::from("envoy.yaml"), yaml));
    }
    let copy = dir.join("envoy.yaml");
    let yaml = yaml.replace(YAML_WASM, &built.to_string_lossy());
    std::fs::write(&copy, &yaml)?;
    println!(
        "CARGO_TARGET_DIR is set: running {} (envoy.yaml loading {})",
        copy.display(),
        built.display()
    );
    Ok((copy, yaml))
}

/// Fails with one line when something already listens on `port`.
fn ensure_port_free(port: u16, who: &str) -> Res {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // The test listener is closed before the connect, which catches what the bind may not
    // (a listener with SO_REUSEPORT).
    let bindable = TcpListener::bind(addr).map(drop).is_ok();
    let in_use = !bindable || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
    if in_use {
        return Err(err(format!(
            "port {port} ({who}, fixed in envoy.yaml) is already in use on 127.0.0.1: stop what \
             listens there (`ss -ltnp | grep :{port}`) and run the demo again"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Everything the demo started, each in its own process group; stopped (in reverse order)
/// when dropped, so on errors and panics too. A watchdog `sh` in its own process group holds
/// the read end of a pipe from this process: if the demo dies without dropping this (Ctrl-C,
/// SIGKILL), the pipe closes and the watchdog stops the registered process groups.
struct Procs {
    items: Vec<(&'static str, Child)>,
    watchdog: Option<(Child, ChildStdin)>,
}

const WATCHDOG: &str = "trap '' HUP INT TERM
pids=''
while read -r p; do pids=\"$pids $p\"; done
for p in $pids; do kill -TERM -$p 2>/dev/null; done
sleep 3
for p in $pids; do kill -KILL -$p 2>/dev/null; done";

impl Procs {
    fn new(sh: &Sh) -> Self {
        use std::os::unix::process::CommandExt;
        let mut c = sh.cmd("sh");
        c.args(["-c", WATCHDOG])
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let watchdog = match c.spawn() {
            Ok(mut child) => match child.stdin.take() {
                Some(stdin) => Some((child, stdin)),
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    None
                }
            },
            Err(e) => {
                println!("(no watchdog: cannot start sh: {e}; Ctrl-C may leave processes behind)");
                None
            }
        };
        Self {
            items: Vec::new(),
            watchdog,
        }
    }

    /// Starts `c` in its own process group and registers it with the watchdog.
    fn spawn(&mut self, sh: &Sh, name: &'static str, mut c: Command) -> Res<u32> {
        use std::os::unix::process::CommandExt;
        let shown = sh.show(&c);
        c.process_group(0).stdin(Stdio::null());
        let child = c
            .spawn()
            .map_err(|e| err(format!("{shown}: cannot start: {e}")))?;
        let pid = child.id();
        self.items.push((name, child));
        if let Some((_, stdin)) = &mut self.watchdog {
            let _ = writeln!(stdin, "{pid}");
            let _ = stdin.flush();
        }
        println!("$ {shown} &    ({name}: pid {pid})");
        Ok(pid)
    }

    fn child(&mut self, pid: u32) -> Res<&mut Child> {
        self.items
            .iter_mut()
            .map(|(_, c)| c)
            .find(|c| c.id() == pid)
            .ok_or_else(|| err(format!("no process {pid}")))
    }

    /// A `capi` server: waits for its `listening on` line; stderr goes to `log`.
    fn start_server(
        &mut self,
        sh: &Sh,
        name: &'static str,
        mut c: Command,
        log: &Path,
        banner: &str,
    ) -> Res {
        c.stdout(Stdio::piped()).stderr(File::create(log)?);
        let pid = self.spawn(sh, name, c)?;
        let stdout = self
            .child(pid)?
            .stdout
            .take()
            .ok_or_else(|| err(format!("{name}: no stdout")))?;
        let (tx, rx) = mpsc::channel();
        // The first line to us, the rest drained so that the server never blocks on stdout.
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            if let Some(first) = lines.next() {
                let _ = tx.send(first);
            }
            lines.for_each(drop);
        });
        let first = rx.recv_timeout(SERVER_START_LIMIT).map_err(|_| {
            err(format!(
                "{name} exited or printed nothing within {}s{}",
                SERVER_START_LIMIT.as_secs(),
                log_tail(log, 5)
            ))
        })?;
        let url = first.strip_prefix(banner).ok_or_else(|| {
            err(format!(
                "{name}: unexpected first line {first:?}{}",
                log_tail(log, 5)
            ))
        })?;
        println!("  {name} listening on {}", url.trim());
        Ok(())
    }

    /// Envoy, logging to `log`: ready once the admin says LIVE and the listener accepts.
    fn start_envoy(&mut self, sh: &Sh, mut c: Command, log: &Path) -> Res {
        let f = File::create(log)?;
        c.stdout(f.try_clone()?).stderr(f);
        let t = Instant::now();
        let pid = self.spawn(sh, "envoy", c)?;
        let listener = SocketAddr::from((Ipv4Addr::LOCALHOST, LISTENER_PORT));
        loop {
            if let Some(status) = self.child(pid)?.try_wait()? {
                return Err(err(format!(
                    "envoy exited ({status}) before it was ready{}",
                    log_tail(log, 15)
                )));
            }
            let live = http(ADMIN_PORT, "GET", "/ready", &[], b"")
                .is_ok_and(|r| r.status == 200 && r.body.trim_ascii() == b"LIVE");
            if live && TcpStream::connect_timeout(&listener, Duration::from_millis(500)).is_ok() {
                println!(
                    "  envoy ready in {}: admin 127.0.0.1:{ADMIN_PORT} LIVE, listener \
                     127.0.0.1:{LISTENER_PORT} accepting",
                    fmt_duration(t.elapsed())
                );
                return Ok(());
            }
            if t.elapsed() > ENVOY_READY_LIMIT {
                return Err(err(format!(
                    "envoy was not ready within {}s{}",
                    ENVOY_READY_LIMIT.as_secs(),
                    log_tail(log, 15)
                )));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Sends `signal` to the process group `pid` (the shell's `kill`: no procps needed).
fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -{signal} -{pid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn stop(name: &str, child: &mut Child) {
    let pid = child.id();
    if let Ok(Some(status)) = child.try_wait() {
        println!("  {name} (pid {pid}) had already exited ({status})");
        return;
    }
    signal_group(pid, "TERM");
    let t = Instant::now();
    while t.elapsed() < STOP_GRACE {
        if let Ok(Some(_)) = child.try_wait() {
            println!("  stopped {name} (pid {pid})");
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    signal_group(pid, "KILL");
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "  killed {name} (pid {pid}): it ignored SIGTERM for {}s",
        STOP_GRACE.as_secs()
    );
}

impl Drop for Procs {
    fn drop(&mut self) {
        // Disarm the watchdog first (closing its pipe would set it off).
        if let Some((mut child, stdin)) = self.watchdog.take() {
            let _ = child.kill();
            let _ = child.wait();
            drop(stdin);
        }
        while let Some((name, mut child)) = self.items.pop() {
            stop(name, &mut child);
        }
    }
}

/// The last `n` lines of a log file, as an error suffix.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        format!(" ({} is empty)", path.display())
    } else {
        format!("; {} ends with:\n  {}", path.display(), tail.join("\n  "))
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 over a plain TcpStream (the Envoy listener and admin): no curl needed.

struct HttpResponse {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Res<HttpResponse> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    if !body.is_empty() || method == "POST" {
        let _ = write!(req, "content-length: {}\r\n", body.len());
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Res<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| err("http: no complete response head"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err("http: bad status line"))?;
    let (mut content_type, mut chunked, mut length) = (String::new(), false, None);
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-type" => content_type = v.to_owned(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "content-length" => length = v.parse::<usize>().ok(),
                _ => {}
            }
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest[..length.unwrap_or(rest.len()).min(rest.len())].to_vec()
    };
    Ok(HttpResponse {
        status,
        content_type,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Res<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| err("http: truncated chunk size"))?;
        let line = String::from_utf8_lossy(&b[..eol]);
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| err(format!("http: bad chunk size {hex:?}")))?;
        if size == 0 {
            return Ok(out);
        }
        let data = b
            .get(eol + 2..eol + 2 + size)
            .ok_or_else(|| err("http: truncated chunk"))?;
        out.extend_from_slice(data);
        b = b.get(eol + 4 + size..).unwrap_or_default();
    }
}

// ---------------------------------------------------------------------------------------------
// What to send, and what should arrive

/// A rule of the plugin configuration, as far as the demo needs it.
#[derive(Debug, PartialEq)]
struct Rule {
    conversion_type: String,
    method: Option<String>,
    path: Option<String>,
    path_prefix: Option<String>,
}

impl Rule {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && match (&self.path, &self.path_prefix) {
                (Some(p), _) => glob(p.as_bytes(), path.as_bytes()),
                (None, Some(p)) => path.starts_with(p.as_str()),
                (None, None) => true,
            }
    }
}

/// `*` matches any run of bytes (as the core's path globs).
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s
            .split_first()
            .is_some_and(|(d, t)| c == d && glob(rest, t)),
    }
}

/// The inline plugin configuration of envoy.yaml (the block scalar after `value: |`).
fn inline_config(yaml: &str) -> Option<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut lines = yaml.lines();
    let start = lines
        .by_ref()
        .find(|l| l.trim_end().ends_with("value: |"))?;
    let base = indent(start);
    let block: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || indent(l) > base)
        .collect();
    Some(block.join("\n"))
}

fn plugin_rules(yaml: &str) -> Res<Vec<Rule>> {
    let text = inline_config(yaml)
        .ok_or_else(|| err("envoy.yaml: no inline plugin configuration (`value: |`)"))?;
    let config =
        Json::parse(&text).map_err(|e| err(format!("envoy.yaml: plugin configuration: {e}")))?;
    let rules = match config.get("rules") {
        Some(Json::Arr(rules)) => rules,
        _ => return Err(err("envoy.yaml: plugin configuration has no rules")),
    };
    Ok(rules
        .iter()
        .map(|r| {
            let m = r.get("match");
            let s = |j: Option<&Json>, k: &str| {
                j.and_then(|j| j.get(k))
                    .and_then(Json::as_str)
                    .map(str::to_owned)
            };
            Rule {
                conversion_type: s(Some(r), "conversion_type").unwrap_or_default(),
                method: s(m, "method"),
                path: s(m, "path"),
                path_prefix: s(m, "path_prefix"),
            }
        })
        .collect())
}

#[derive(Debug)]
struct Expect {
    conversion_type: String,
    order_id: Option<String>,
}

impl Expect {
    fn describe(&self) -> String {
        match &self.order_id {
            Some(o) => format!("{} {o}", self.conversion_type),
            None => self.conversion_type.clone(),
        }
    }
}

struct Request {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    note: String,
    expect: Option<Expect>,
}

const CHECKOUTS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "DEMO-1001",
        "Jane.Doe@Example.com",
        "+1 (415) 555-2671",
        "49.90",
        "usd",
    ),
    (
        "DEMO-1002",
        " sam.lee@example.org ",
        "+44 20 7946 0958",
        "129.00",
        "eur",
    ),
    (
        "DEMO-1003",
        "maria@example.net",
        "(212) 555-0143",
        "18.50",
        "usd",
    ),
];

/// The requests to send: checkouts, one sign-up and one form lead (when envoy.yaml has rules
/// for them), and pages no rule covers; each with the conversion it should produce.
fn plan(rules: &[Rule]) -> Res<Vec<Request>> {
    let rule_for = |method: &str, path: &str| {
        rules
            .iter()
            .find(|r| r.matches(method, path))
            .map(|r| r.conversion_type.clone())
    };
    let browser = vec![
        ("user-agent", SAFARI),
        (
            "cookie",
            "capi_guid=85b04ded-09dd-4015-ad30-581e45452dd9; theme=dark",
        ),
    ];
    let page = |path: &str| Request {
        method: "GET",
        path: path.to_owned(),
        headers: browser.clone(),
        body: String::new(),
        note: "(no conversion)".to_owned(),
        expect: None,
    };
    let mut out = vec![page("/"), page("/products/1")];

    let purchase = rule_for("POST", "/api/checkout")
        .ok_or_else(|| err("envoy.yaml: no rule matches POST /api/checkout"))?;
    for (order_id, email, phone, total, currency) in CHECKOUTS {
        let mut headers = browser.clone();
        headers.push(("content-type", "application/json"));
        out.push(Request {
            method: "POST",
            path: "/api/checkout".to_owned(),
            headers,
            body: format!(
                r#"{{"email":"{email}","phone":"{phone}","total":"{total}","currency":"{currency}","order_id":"{order_id}"}}"#
            ),
            note: format!("{order_id} {total} {}", currency.to_uppercase()),
            expect: Some(Expect {
                conversion_type: purchase.clone(),
                order_id: Some(order_id.to_owned()),
            }),
        });
    }
    out.push(page("/cart"));

    let register = (
        "/api/register",
        "application/json",
        r#"{"email":"new.user@example.org","password":"x"}"#,
    );
    let lead = (
        "/forms/contact/submit",
        "application/x-www-form-urlencoded",
        "name=Lee&email=lead%40example.net&phone=%2B44+20+7946+0958",
    );
    for (path, ctype, body) in [register, lead] {
        match rule_for("POST", path) {
            Some(conversion_type) => {
                let mut headers = browser.clone();
                headers.push(("content-type", ctype));
                out.push(Request {
                    method: "POST",
                    path: path.to_owned(),
                    headers,
                    body: body.to_owned(),
                    note: format!("({conversion_type})"),
                    expect: Some(Expect {
                        conversion_type,
                        order_id: None,
                    }),
                });
            }
            None => println!("(envoy.yaml has no rule for POST {path}: not sent)"),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// What the sink received

enum Source {
    Curl { ca: PathBuf },
    Record(PathBuf),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Curl { ca } => format!(
                "GET https://127.0.0.1:{SINK_PORT}/_sink/events (curl, CA {})",
                ca.display()
            ),
            Source::Record(p) => format!(
                "curl is not installed: reading the sink's record file {}",
                p.display()
            ),
        }
    }

    fn events(&self) -> Res<Vec<Json>> {
        match self {
            Source::Curl { ca } => {
                let out = Command::new("curl")
                    .args([
                        "-sS",
                        "--fail",
                        "--max-time",
                        "5",
                        "--noproxy",
                        "*",
                        "--cacert",
                    ])
                    .arg(ca)
                    .args(["-H", &format!("authorization: Bearer {TOKEN}")])
                    .arg(format!("https://127.0.0.1:{SINK_PORT}/_sink/events"))
                    .stdin(Stdio::null())
                    .output()?;
                if !out.status.success() {
                    return Err(err(format!(
                        "curl /_sink/events failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                match Json::parse(&String::from_utf8_lossy(&out.stdout))? {
                    Json::Arr(events) => Ok(events),
                    _ => Err(err("/_sink/events: not a JSON array")),
                }
            }
            Source::Record(path) => {
                let text = match std::fs::read_to_string(path) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                    Err(e) => return Err(e.into()),
                };
                // Only complete lines: the sink may be appending right now.
                let complete = text.rfind('\n').map_or("", |i| &text[..i]);
                complete
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(Json::parse)
                    .collect()
            }
        }
    }
}

/// Polls until `n` events arrived (then listens `SETTLE` longer for unexpected ones) or the
/// time is up; returns what arrived.
fn wait_for_events(source: &Source, n: usize) -> Res<Vec<Json>> {
    let t = Instant::now();
    loop {
        let events = source.events()?;
        if events.len() >= n {
            thread::sleep(SETTLE);
            return source.events();
        }
        if t.elapsed() > EVENTS_LIMIT {
            return Ok(events);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Received events against the expected ones.
struct Check {
    /// Per received event: "" when expected, else why not.
    verdicts: Vec<String>,
    missing: Vec<String>,
    unexpected: usize,
}

impl Check {
    fn new(expected: &[&Expect], events: &[Json]) -> Self {
        let mut open: Vec<&Expect> = expected.to_vec();
        let mut verdicts = Vec::new();
        let mut unexpected = 0;
        for e in events {
            let ct = e.get("conversion_type").and_then(Json::as_str);
            let oid = e.get("order_id").and_then(Json::as_str);
            let found = open.iter().position(|x| {
                Some(x.conversion_type.as_str()) == ct
                    && x.order_id.as_deref().is_none_or(|o| Some(o) == oid)
            });
            match found {
                Some(i) => {
                    open.remove(i);
                    verdicts.push(String::new());
                }
                None => {
                    unexpected += 1;
                    verdicts.push("   <-- UNEXPECTED".to_owned());
                }
            }
        }
        Self {
            verdicts,
            missing: open.iter().map(|x| x.describe()).collect(),
            unexpected,
        }
    }
}

/// `Purchase  order_id=DEMO-1001  value=49.9 USD    ids=HashedEmail,Guid  event_id=992d249c0a1b…`.
fn summarize(e: &Json) -> String {
    let field = |k: &str| e.get(k).map_or_else(|| "-".to_owned(), Json::text);
    let ids = match e.get("ids") {
        Some(Json::Arr(ids)) => ids
            .iter()
            .map(|i| i.get("name").map_or_else(|| "?".to_owned(), Json::text))
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".to_owned(),
    };
    let event_id = field("event_id");
    let prefix: String = event_id.chars().take(12).collect();
    let ellipsis = if event_id.chars().count() > 12 {
        "…"
    } else {
        ""
    };
    let value = format!("{} {}", field("value"), field("currency"));
    format!(
        "{:<9} order_id={:<10} value={value:<11} ids={ids:<40} event_id={prefix}{ellipsis}",
        field("conversion_type"),
        field("order_id"),
    )
}

/// `wasmcustom.capi.NAME: N` lines: the non-zero ones, then the names of the zero ones.
fn print_counters(stats: &str) {
    let mut zero = Vec::new();
    let mut any = false;
    for line in stats.lines() {
        let Some((k, v)) = line.split_once(": ") else {
            continue;
        };
        let name = k.strip_prefix("wasmcustom.capi.").unwrap_or(k);
        any = true;
        if v.trim() == "0" {
            zero.push(name);
        } else {
            println!("  {k}: {}", v.trim());
        }
    }
    if !any {
        println!("  (none: {stats:?})");
    } else if !zero.is_empty() {
        println!("  (zero: {})", zero.join(", "));
    }
}

// ---------------------------------------------------------------------------------------------
// A small JSON reader (xtask has no dependencies): the sink's events and the plugin config.

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    /// As written.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Res<Json> {
        let mut p = Parser {
            b: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.b.len() {
            return Err(p.fail("trailing characters"));
        }
        Ok(v)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Scalars as text; containers abbreviated.
    fn text(&self) -> String {
        match self {
            Json::Null => "null".to_owned(),
            Json::Bool(b) => b.to_string(),
            Json::Num(n) => n.clone(),
            Json::Str(s) => s.clone(),
            Json::Arr(_) => "[…]".to_owned(),
            Json::Obj(_) => "{…}".to_owned(),
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn fail(&self, what: &str) -> Box<dyn std::error::Error> {
        err(format!("JSON: {what} at byte {}", self.i))
    }

    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Res {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.fail(&format!("expected {:?}", c as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Res<Json> {
        if depth > 64 {
            return Err(self.fail("nested too deep"));
        }
        self.ws();
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    fields.push((k, self.value(depth + 1)?));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(self.fail("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(self.fail("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                {
                    self.i += 1;
                }
                Ok(Json::Num(
                    String::from_utf8_lossy(&self.b[start..self.i]).into_owned(),
                ))
            }
            _ => Err(self.fail("expected a value")),
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Res<Json> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.fail("bad literal"))
        }
    }

    fn hex4(&mut self) -> Res<u32> {
        let digits = self
            .b
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.fail("bad \\u escape"))?;
        self.i += 4;
        Ok(digits)
    }

    fn string(&mut self) -> Res<String> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(self.fail("expected a string"));
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = *self
                .b
                .get(self.i)
                .ok_or_else(|| self.fail("unterminated string"))?;
            self.i += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let e = *self
                        .b
                        .get(self.i)
                        .ok_or_else(|| self.fail("unterminated escape"))?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi)
                                && self.b[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return Err(self.fail("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_reads_events() {
        let v = Json::parse(
            r#"[{"conversion_type":"Purchase","value":49.9,"ids":[{"name":"HashedEmail","id":"ab"}],
               "ok":true,"n":null,"s":"a\"b\\c\u00e9\ud83d\ude00"}, []]"#,
        )
        .unwrap();
        let Json::Arr(items) = &v else { panic!() };
        let e = &items[0];
        assert_eq!(
            e.get("conversion_type").and_then(Json::as_str),
            Some("Purchase")
        );
        assert_eq!(e.get("value"), Some(&Json::Num("49.9".into())));
        assert_eq!(e.get("s").and_then(Json::as_str), Some("a\"b\\cé😀"));
        assert!(Json::parse("{\"a\":1,}").is_err());
        assert!(Json::parse("[1] x").is_err());
        let s = summarize(e);
        assert!(s.starts_with("Purchase"), "{s}");
        assert!(s.contains("ids=HashedEmail"), "{s}");
    }

    #[test]
    fn http_responses() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n\
              4\r\nwasm\r\n6;x=1\r\ncustom\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.content_type.as_str()), (200, "text/plain"));
        assert_eq!(r.body, b"wasmcustom");
        let r =
            parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abc"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn rules_from_the_repository_envoy_yaml() {
        let yaml = include_str!("../../envoy.yaml");
        let rules = plugin_rules(yaml).unwrap();
        let ct = |m: &str, p: &str| {
            rules
                .iter()
                .find(|r| r.matches(m, p))
                .map(|r| r.conversion_type.as_str())
        };
        assert_eq!(ct("POST", "/api/checkout"), Some("Purchase"));
        assert_eq!(ct("GET", "/api/checkout"), None);
        assert_eq!(ct("POST", "/api/register"), Some("Signup"));
        assert_eq!(ct("POST", "/forms/contact/submit"), Some("Lead"));
        assert_eq!(ct("GET", "/products/1"), None);
        let plan = plan(&rules).unwrap();
        assert_eq!(plan.iter().filter(|r| r.expect.is_some()).count(), 5);
    }

    #[test]
    fn globs() {
        assert!(glob(b"/forms/*/submit", b"/forms/contact/submit"));
        assert!(!glob(b"/forms/*/submit", b"/forms/contact/send"));
        assert!(glob(b"*", b""));
    }

    #[test]
    fn check_matches_events_to_expectations() {
        let p = Expect {
            conversion_type: "Purchase".into(),
            order_id: Some("A".into()),
        };
        let s = Expect {
            conversion_type: "Signup".into(),
            order_id: None,
        };
        let ev = |ct: &str, oid: &str| {
            Json::Obj(vec![
                ("conversion_type".into(), Json::Str(ct.into())),
                ("order_id".into(), Json::Str(oid.into())),
            ])
        };
        let c = Check::new(&[&p, &s], &[ev("Purchase", "A"), ev("Purchase", "B")]);
        assert_eq!(
            (c.unexpected, c.missing.clone()),
            (1, vec!["Signup".to_owned()])
        );
        assert_eq!(c.verdicts[0], "");
    }
}
