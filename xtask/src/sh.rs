//! Running commands: every command is echoed before it runs, and a non-zero exit is an error
//! that names the command.

use std::error::Error;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub type Res<T = ()> = Result<T, Box<dyn Error>>;

/// An error from a message.
pub fn err(msg: impl Into<String>) -> Box<dyn Error> {
    msg.into().into()
}

/// The repository root, and how to reach it.
pub struct Sh {
    pub root: PathBuf,
}

impl Sh {
    pub fn new() -> Res<Self> {
        // xtask/ lives directly under the workspace root.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or_else(|| err("xtask: CARGO_MANIFEST_DIR has no parent"))?
            .to_path_buf();
        std::env::set_current_dir(&root)?;
        Ok(Self { root })
    }

    /// `$CARGO_TARGET_DIR`, else `<root>/target`.
    pub fn target_dir(&self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(d) if !d.is_empty() => self.root.join(d),
            _ => self.root.join("target"),
        }
    }

    /// A command run from the repository root.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.current_dir(&self.root);
        c
    }

    /// `cargo` from PATH (the rustup proxy, so that `+nightly` works), not `$CARGO`.
    pub fn cargo(&self) -> Command {
        self.cmd("cargo")
    }

    /// How a command is echoed: program and arguments, quoted where needed.
    pub fn show(&self, c: &Command) -> String {
        let mut s = c.get_program().to_string_lossy().into_owned();
        for a in c.get_args() {
            let a = a.to_string_lossy();
            s.push(' ');
            if a.is_empty() || a.contains(' ') {
                s.push_str(&format!("'{a}'"));
            } else {
                s.push_str(&a);
            }
        }
        match c.get_current_dir() {
            Some(d) if d != self.root => {
                let d = d.strip_prefix(&self.root).unwrap_or(d);
                format!("(cd {} && {s})", d.display())
            }
            _ => s,
        }
    }

    /// Runs to completion with inherited stdio; fails on a non-zero exit.
    pub fn run(&self, c: &mut Command) -> Res {
        let shown = self.show(c);
        println!("$ {shown}");
        let status = c
            .status()
            .map_err(|e| err(format!("{shown}: cannot start: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(err(format!("`{shown}` failed ({status})")))
        }
    }

    /// Like [`Sh::run`], but the command (and everything it started in its process group)
    /// is killed after `limit`.
    pub fn run_bounded(&self, c: &mut Command, limit: Duration) -> Res {
        use std::os::unix::process::CommandExt;
        let shown = self.show(c);
        println!("$ {shown}    (time limit {}s)", limit.as_secs());
        c.process_group(0);
        let mut child = c
            .spawn()
            .map_err(|e| err(format!("{shown}: cannot start: {e}")))?;
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(err(format!("`{shown}` failed ({status})")))
                };
            }
            if start.elapsed() > limit {
                let group = format!("-{}", child.id());
                for (signal, grace) in [("-TERM", 5), ("-KILL", 0)] {
                    let _ = Command::new("kill")
                        .args([signal, "--", &group])
                        .stderr(Stdio::null())
                        .status();
                    thread::sleep(Duration::from_secs(grace));
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(format!(
                    "`{shown}` timed out after {}s and was killed",
                    limit.as_secs()
                )));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs and returns stdout; stderr passes through. Fails on a non-zero exit.
    pub fn read(&self, c: &mut Command) -> Res<String> {
        let shown = self.show(c);
        let out = c
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| err(format!("{shown}: cannot start: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(err(format!("`{shown}` failed ({})", out.status)))
        }
    }

    /// Whether the command runs and exits 0, all output discarded (for "is X installed?").
    pub fn probe(&self, c: &mut Command) -> bool {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// `1m05s` / `12.3s`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{s:.1}s")
    }
}
