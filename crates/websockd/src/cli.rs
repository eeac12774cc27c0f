//! The command line: websocketd's flags with websocketd's syntax (Go's `flag` package), and
//! websockd's own few additions.
//!
//! Go's syntax, which websocketd users type: `-flag` and `--flag` alike; `--flag=value` and
//! `--flag value`; a boolean is `--flag` or `--flag=true|false` (never `--flag false`);
//! flags end at the first argument that is not one, or at `--`; what follows is the
//! program and its arguments, hyphens and all. A pre-pass turns that into what clap parses
//! (double hyphens, a `--` before the program); clap does the rest.

use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The flags that take a value (`--flag value` consumes the next argument).
const VALUE_FLAGS: &[&str] = &[
    "port",
    "address",
    "unixsocket",
    "sslcert",
    "sslkey",
    "sslca",
    "origin",
    "passenv",
    "dir",
    "staticdir",
    "cgidir",
    "maxforks",
    "maxframesize",
    "closems",
    "pingms",
    "header",
    "header-ws",
    "header-http",
    "loglevel",
    "redirport",
    "subprotocol",
    "handshakems",
];

/// websocketd's default `--passenv` on Linux and the other Unixes.
pub const DEFAULT_PASSENV: &str = "PATH,LD_LIBRARY_PATH";

/// The parsed command line, as clap sees it after the pre-pass.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "websockd",
    disable_help_flag = true,
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Args {
    /// HTTP port to listen on (0 or absent: 80, or 443 with --ssl).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to bind to (repeatable); IPv6 in square brackets. Default: all.
    #[arg(long)]
    pub address: Vec<String>,
    /// A Unix socket to listen on (alone, when no --port/--address/--redirport is given).
    #[arg(long)]
    pub unixsocket: Option<PathBuf>,
    /// Serve HTTPS (needs --sslcert and --sslkey).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub ssl: bool,
    /// The certificate chain (PEM) for --ssl.
    #[arg(long)]
    pub sslcert: Option<PathBuf>,
    /// The private key (PEM) for --ssl.
    #[arg(long)]
    pub sslkey: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long)]
    pub sslca: Option<PathBuf>,
    /// Allowed origins: `[scheme://]host[:port][,...]`.
    #[arg(long)]
    pub origin: Option<String>,
    /// Refuse upgrades whose Origin is not the Host.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub sameorigin: bool,
    /// The daemon's environment variables passed to programs.
    #[arg(long, default_value = DEFAULT_PASSENV)]
    pub passenv: String,
    /// Binary mode: a read is a message; messages go to the program raw.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub binary: bool,
    /// Send the program's stdout and stderr as tagged JSON messages.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub passstderr: bool,
    /// Look up the client's host name (REMOTE_HOST).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub reverselookup: bool,
    /// Serve every program in this directory, each at its own path.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Serve static files from this directory.
    #[arg(long)]
    pub staticdir: Option<PathBuf>,
    /// Serve CGI programs from this directory.
    #[arg(long)]
    pub cgidir: Option<PathBuf>,
    /// Serve the development console page on plain GETs.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub devconsole: bool,
    /// The most programs running at once (0 or negative: unlimited).
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true)]
    pub maxforks: i64,
    /// The largest message received, in bytes (0: unlimited).
    #[arg(long, default_value_t = 1 << 20, allow_negative_numbers = true)]
    pub maxframesize: i64,
    /// Extra time for a program to end on its own before each signal, in ms.
    #[arg(long, default_value_t = 0)]
    pub closems: u64,
    /// Ping interval in ms (0: off); a client silent for twice that is dropped.
    #[arg(long, default_value_t = 0)]
    pub pingms: u64,
    /// A header for every response (`Name: value`).
    #[arg(long)]
    pub header: Vec<String>,
    /// A header for WebSocket upgrade responses.
    #[arg(long = "header-ws")]
    pub header_ws: Vec<String>,
    /// A header for plain HTTP responses.
    #[arg(long = "header-http")]
    pub header_http: Vec<String>,
    /// debug, trace, access, info, error or fatal.
    #[arg(long, default_value = "access")]
    pub loglevel: String,
    /// A port whose HTTP requests are redirected to the main address.
    #[arg(long)]
    pub redirport: Option<u16>,
    /// Print the help.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub help: bool,
    /// Print the version.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub version: bool,
    /// Print the license.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub license: bool,

    // --- websockd's own ----------------------------------------------------------------
    /// Serve one connection on stdin/stdout (inetd, systemd `Accept=yes`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub inetd: bool,
    /// Thread per core with io_uring (Linux; falls back with one log line).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub uring: bool,
    /// Framed mode: kind + length-prefixed messages both ways.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub framed: bool,
    /// Accept permessage-deflate when a client offers it.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub deflate: bool,
    /// A subprotocol to select when a client offers it (repeatable, in preference order).
    #[arg(long)]
    pub subprotocol: Vec<String>,
    /// How long a client may take to send its request head, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub handshakems: u64,

    /// The program and its arguments.
    #[arg(trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {s:?}")),
    }
}

/// Rewrites Go-style arguments (after the program name) into clap's: `-flag` becomes
/// `--flag`, and a `--` goes before the first argument that is not a flag, so that the
/// program's own arguments are never read as websockd's.
pub fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let Some(s) = arg.to_str() else {
            out.push("--".into());
            out.push(arg);
            break;
        };
        if s == "--" {
            out.push(arg);
            break;
        }
        if s == "-" || !s.starts_with('-') {
            out.push("--".into());
            out.push(arg);
            break;
        }
        // Go refuses three hyphens; clap will say so.
        let flag = if s.starts_with("---") {
            s.to_owned()
        } else {
            format!("--{}", s.trim_start_matches('-'))
        };
        let body = &flag[2..];
        let name = body.split('=').next().unwrap_or(body);
        let takes_value = VALUE_FLAGS.contains(&name) && !body.contains('=');
        // Go's -h and -help print the help.
        if name == "h" {
            out.push("--help".into());
            continue;
        }
        out.push(flag.into());
        if takes_value {
            if let Some(value) = it.next() {
                out.push(value);
            }
        }
    }
    out.extend(it);
    out
}

/// Parses `argv` (the program name first).
pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Args, clap::Error> {
    let mut argv = argv.into_iter();
    let name = argv.next().unwrap_or_else(|| "websockd".into());
    let mut all = vec![name];
    all.extend(normalize(argv));
    Args::try_parse_from(all)
}

/// How the program's output maps onto messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Lines (or reads, or frames) as messages.
    Plain,
    /// websocketd's `--passstderr`: stdout and stderr lines as tagged JSON.
    Tagged,
}

/// Why a command line cannot run.
#[derive(Debug)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Args {
    /// websocketd's checks that span several flags.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.ssl && (self.sslcert.is_none() || self.sslkey.is_none()) {
            return Err(Invalid(
                "please specify both --sslcert and --sslkey when requesting --ssl".into(),
            ));
        }
        if !self.ssl && (self.sslcert.is_some() || self.sslkey.is_some() || self.sslca.is_some()) {
            return Err(Invalid(
                "you should not be using --ssl* flags when there is no --ssl option".into(),
            ));
        }
        if self.binary && self.passstderr {
            return Err(Invalid(
                "please only specify one of --binary and --passstderr".into(),
            ));
        }
        if self.framed && (self.binary || self.passstderr) {
            return Err(Invalid(
                "--framed cannot be combined with --binary or --passstderr".into(),
            ));
        }
        if self.devconsole && (self.staticdir.is_some() || self.cgidir.is_some()) {
            return Err(Invalid(
                "--devconsole cannot be used with --staticdir or --cgidir".into(),
            ));
        }
        if !self.command.is_empty() && self.dir.is_some() {
            return Err(Invalid(
                "ambiguous: provided COMMAND and --dir argument, please only specify one".into(),
            ));
        }
        if self.command.is_empty() && self.dir.is_none() {
            return Err(Invalid("please specify a COMMAND or --dir".into()));
        }
        if level(&self.loglevel).is_none() {
            return Err(Invalid(format!(
                "incorrect loglevel flag '{}' (debug, trace, access, info, error, fatal)",
                self.loglevel
            )));
        }
        if self.inetd
            && (self.port.is_some()
                || !self.address.is_empty()
                || self.unixsocket.is_some()
                || self.redirport.is_some())
        {
            return Err(Invalid(
                "--inetd serves stdin/stdout: no --port, --address, --unixsocket or --redirport"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether only the Unix socket is listened on (websocketd: `--unixsocket` with no
    /// `--port`, `--address` or `--redirport`).
    pub fn unix_only(&self) -> bool {
        self.unixsocket.is_some()
            && self.port.is_none()
            && self.address.is_empty()
            && self.redirport.is_none()
    }

    /// The TCP port: `--port`, or 80/443.
    pub fn tcp_port(&self) -> u16 {
        match self.port {
            Some(p) if p != 0 => p,
            _ if self.ssl => 443,
            _ => 80,
        }
    }

    /// The largest message, `None` for no limit.
    pub fn max_message(&self) -> Option<usize> {
        usize::try_from(self.maxframesize).ok().filter(|&n| n > 0)
    }

    /// The most programs at once, `None` for no limit.
    pub fn max_forks(&self) -> Option<usize> {
        usize::try_from(self.maxforks).ok().filter(|&n| n > 0)
    }

    /// `--closems`.
    pub fn close_extra(&self) -> Duration {
        Duration::from_millis(self.closems)
    }

    /// The output mode.
    pub fn output(&self) -> Output {
        if self.passstderr {
            Output::Tagged
        } else {
            Output::Plain
        }
    }
}

/// websocketd's log levels, most verbose first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Everything.
    Debug,
    /// Details of each connection.
    Trace,
    /// A line per request (the default).
    Access,
    /// Start, stop and such.
    Info,
    /// Errors only.
    Error,
    /// Only what stops the daemon.
    Fatal,
}

/// Parses a `--loglevel` value.
pub fn level(s: &str) -> Option<Level> {
    Some(match s.to_ascii_lowercase().as_str() {
        "debug" => Level::Debug,
        "trace" => Level::Trace,
        "access" => Level::Access,
        "info" => Level::Info,
        "error" => Level::Error,
        "fatal" => Level::Fatal,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, clap::Error> {
        parse(
            std::iter::once("websockd")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    #[test]
    fn go_syntax_is_understood() {
        let a = p(&[
            "-port",
            "8080",
            "--address=127.0.0.1",
            "--address",
            "::1",
            "--binary",
            "cat",
            "-n",
        ])
        .unwrap();
        assert_eq!(a.port, Some(8080));
        assert_eq!(a.address, ["127.0.0.1", "::1"]);
        assert!(a.binary);
        assert_eq!(a.command, [OsString::from("cat"), OsString::from("-n")]);
    }

    #[test]
    fn booleans_take_only_equals_values() {
        let a = p(&["--ssl=false", "--devconsole=true", "--binary=0", "prog"]).unwrap();
        assert!(!a.ssl && a.devconsole && !a.binary);
        // `--binary false`: `false` is the program (as in Go).
        let a = p(&["--binary", "false"]).unwrap();
        assert!(a.binary);
        assert_eq!(a.command, [OsString::from("false")]);
        assert!(p(&["--binary=maybe", "prog"]).is_err());
    }

    #[test]
    fn program_arguments_are_not_flags() {
        let a = p(&["--port=1", "sh", "-c", "--port=2"]).unwrap();
        assert_eq!(a.port, Some(1));
        assert_eq!(a.command.len(), 3);
        let a = p(&["--", "--weird-program"]).unwrap();
        assert_eq!(a.command, [OsString::from("--weird-program")]);
    }

    #[test]
    fn defaults_are_websocketds() {
        let a = p(&["cat"]).unwrap();
        assert_eq!(a.maxforks, 1024);
        assert_eq!(a.max_message(), Some(1 << 20));
        assert_eq!(a.passenv, DEFAULT_PASSENV);
        assert_eq!(a.tcp_port(), 80);
        assert_eq!(a.loglevel, "access");
        let a = p(&["--maxframesize=0", "--maxforks=-1", "cat"]).unwrap();
        assert_eq!(a.max_message(), None);
        assert_eq!(a.max_forks(), None);
    }

    #[test]
    fn cross_flag_checks() {
        assert!(p(&["--ssl", "cat"]).unwrap().validate().is_err());
        assert!(p(&["--sslcert=x", "cat"]).unwrap().validate().is_err());
        assert!(p(&["--binary", "--passstderr", "cat"])
            .unwrap()
            .validate()
            .is_err());
        assert!(p(&["--dir=.", "cat"]).unwrap().validate().is_err());
        assert!(p(&["--loglevel=loud", "cat"]).unwrap().validate().is_err());
        assert!(p(&["--port=1"]).unwrap().validate().is_err());
        assert!(p(&["--ssl", "--sslcert=c", "--sslkey=k", "cat"])
            .unwrap()
            .validate()
            .is_ok());
        assert!(p(&["--unixsocket=/tmp/s", "cat"]).unwrap().unix_only());
        assert!(!p(&["--unixsocket=/tmp/s", "--port=9", "cat"])
            .unwrap()
            .unix_only());
    }

    #[test]
    fn repeated_headers_and_help() {
        let a = p(&[
            "--header=A: 1",
            "--header",
            "B: 2",
            "--header-ws=C: 3",
            "cat",
        ])
        .unwrap();
        assert_eq!(a.header, ["A: 1", "B: 2"]);
        assert_eq!(a.header_ws, ["C: 3"]);
        assert!(p(&["-help"]).unwrap().help);
        assert!(p(&["-h"]).unwrap().help);
        assert!(p(&["--version"]).unwrap().version);
    }
}
