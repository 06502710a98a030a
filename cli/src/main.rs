//! `capi`: the native command line over capi-core.
//!
//! Offline: `hash`, `validate-config`, `build`. Online: `send` (HTTPS with the core's retry
//! policy). For tests and the demo: `sink` (a local stand-in for an ad platform's Conversions
//! API) and `demo-shop` (an upstream shop the Envoy filter watches).
//!
//! Exit codes: 0 success, 1 an event was dropped by `send`, 2 bad input of any kind (one line
//! on stderr naming what is wrong).

mod fault;
mod offline;
mod send;
mod server;
mod shop;
mod sink;
mod tls;
mod util;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::util::CliError;

#[derive(Parser, Debug)]
#[command(
    name = "capi",
    version,
    about = "Conversions API events: hash, validate, build, send; a local sink and demo shop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum HashKind {
    Email,
    Phone,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the normalized SHA-256 hex of an email or phone (`-` reads the value from stdin).
    Hash {
        kind: HashKind,
        value: String,
        /// Country calling code for phone numbers without one.
        #[arg(long, default_value = "1")]
        calling_code: String,
    },
    /// Check a plugin configuration file (`-` for stdin).
    ValidateConfig { file: String },
    /// Print the request that would be sent for one collect payload.
    Build {
        #[arg(long)]
        config: String,
        #[arg(long)]
        event: String,
        /// The time of the conversion when the payload has none (ISO 8601); default now.
        #[arg(long)]
        now: Option<String>,
        /// Print the body exactly as sent instead of pretty-printed.
        #[arg(long)]
        raw: bool,
    },
    /// Send one collect payload to the configured destination, retrying per the config.
    Send {
        #[arg(long)]
        config: String,
        #[arg(long)]
        event: String,
        /// Extra PEM file of CA certificates to trust (besides the public roots).
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Run a local stand-in for an ad platform's Conversions API.
    Sink(sink::SinkArgs),
    /// Run a demo shop upstream (for the Envoy filter tests and the demo).
    DemoShop(shop::ShopArgs),
}

fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Hash {
            kind,
            value,
            calling_code,
        } => offline::hash(matches!(kind, HashKind::Phone), &value, &calling_code),
        Command::ValidateConfig { file } => offline::validate_config(&file),
        Command::Build {
            config,
            event,
            now,
            raw,
        } => offline::build(&config, &event, now.as_deref(), raw),
        Command::Send { config, event, ca } => send::send(&config, &event, ca.as_deref()),
        Command::Sink(args) => sink::run(args),
        Command::DemoShop(args) => shop::run(args),
    }
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line: String = format!("error: internal error{at}: {what}")
            .chars()
            .filter(|c| *c != '\n')
            .collect();
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    return ExitCode::SUCCESS;
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "error: a subcommand is required (see capi --help)"
                    );
                    return ExitCode::from(2);
                }
                _ => {}
            }
            // clap's own message spans several lines (usage, hints): keep its first paragraph.
            let rendered = e.render().to_string();
            let first: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect();
            let first = if first.is_empty() {
                "error: bad arguments".to_owned()
            } else {
                first.join(" ")
            };
            let _ = writeln!(std::io::stderr().lock(), "{first} (see capi --help)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = std::io::stdout().flush();
            let _ = writeln!(std::io::stderr().lock(), "error: {}", e.one_line());
            ExitCode::from(2)
        }
    }
}
