//! Small shared pieces: the CLI error, input files (`-` is stdin), the clock, logging.

use std::fmt;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use capi_core::time::UnixMillis;

/// Bad input of any kind: printed as one `error: ...` line, exit code 2.
#[derive(Debug)]
pub struct CliError(pub String);

impl CliError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }

    /// The message on a single line (control characters flattened).
    pub fn one_line(&self) -> String {
        self.0
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads a whole file, or stdin for `-`. `what` names the input in errors.
pub fn read_input(path: &str, what: &str) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    if path == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| CliError(format!("{what}: cannot read stdin: {e}")))?;
    } else {
        buf = std::fs::read(path)
            .map_err(|e| CliError(format!("{what} {path}: {}", io_reason(&e))))?;
    }
    Ok(buf)
}

/// An io::Error's reason without the "(os error N)" noise.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// One line to stderr; never fails (a closed stderr must not take a server down).
pub fn log_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// One line to stdout, flushed (scripts wait for it).
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A current-thread tokio runtime: both servers and the client are I/O bound.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("cannot start the async runtime: {e}")))
}
