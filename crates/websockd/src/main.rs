//! websockd: serves a program's stdin/stdout over WebSockets, one process per connection,
//! with websocketd's command line (`websockd --port=8080 ./count.sh`).
//!
//! The files, one job each: `cli` (the command line), `listen` (listeners, TLS, inetd,
//! systemd sockets), `routes` (the HTTP handler: upgrade checks, dev console, CGI, static
//! files), `env` (the CGI environment), `script` (which program a path runs), `process`
//! (starting a program in its own group, and ending the group), `bridge` (moving bytes
//! between the WebSocket and the program), `framing` (lines, reads and frames as
//! messages), `origin`, `cgi`, `static_files`, `log`.
#![forbid(unsafe_code)]

mod bridge;
mod cgi;
mod cli;
mod env;
mod framing;
mod listen;
mod log;
mod origin;
mod process;
mod routes;
mod script;
mod static_files;

use cli::{Args, Level};
use framing::Mode;
use routes::App;
use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use weft::server::{handler_fn, Model, Server, Shutdown};
// `crate::proto`: the engine's types, as `framing.rs` names them (the fuzz crate includes
// that file and defines the same name).
use weft::proto;

const USAGE: &str = "\
Usage:

  Export a single executable program a WebSocket server:
    websockd [options] COMMAND [command args]

  Or, export an entire directory of executables as WebSocket endpoints:
    websockd [options] --dir=SOMEDIR

  Or, show extended help message using:
    websockd --help
";

const HELP: &str = include_str!("help.txt");

const LICENSE: &str = "\
websockd is licensed under the MIT license or the Apache License 2.0, at your option.
Its command line follows websocketd's (Copyright 2013 Joe Walnes and the websocketd team,
BSD license); no websocketd code is used.";

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}", e.kind_message());
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{HELP}");
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("websockd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if args.license {
        println!("websockd {}\n{LICENSE}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Err(e) = args.validate() {
        eprintln!("websockd: {e}");
        eprintln!("{USAGE}");
        return ExitCode::from(1);
    }
    log::init(cli::level(&args.loglevel).unwrap_or(Level::Access));
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::log(Level::Fatal, "server", "", format_args!("{e}"));
            ExitCode::from(1)
        }
    }
}

/// Extension for clap's error: its message without clap's own usage line.
trait KindMessage {
    fn kind_message(&self) -> String;
}

impl KindMessage for clap::Error {
    fn kind_message(&self) -> String {
        let text = self.to_string();
        let first = text.lines().next().unwrap_or("invalid arguments");
        format!("websockd: {}", first.trim_start_matches("error: "))
    }
}

fn run(args: Args) -> io::Result<()> {
    let app = Arc::new(build_app(&args)?);
    process::become_subreaper();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args, app))
}

fn build_app(args: &Args) -> io::Result<App> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let target = match (&args.dir, args.command.split_first()) {
        (Some(dir), _) => {
            let dir = std::fs::canonicalize(dir).map_err(|e| {
                invalid(format!(
                    "could not find your script dir '{}': {e}",
                    dir.display()
                ))
            })?;
            if !dir.is_dir() {
                return Err(invalid(format!(
                    "did you mean to specify COMMAND instead of --dir '{}'?",
                    dir.display()
                )));
            }
            script::Target::Dir(dir)
        }
        (None, Some((name, rest))) => {
            let program = script::find_program(name).ok_or_else(|| {
                invalid(format!(
                    "unable to locate specified COMMAND '{}' in OS path",
                    name.to_string_lossy()
                ))
            })?;
            script::Target::Command {
                program,
                args: rest.to_vec(),
            }
        }
        (None, None) => return Err(invalid("please specify a COMMAND or --dir".into())),
    };
    for (flag, dir) in [("staticdir", &args.staticdir), ("cgidir", &args.cgidir)] {
        if let Some(d) = dir {
            if !d.is_dir() {
                return Err(invalid(format!(
                    "your --{flag} '{}' is not pointing to an accessible directory",
                    d.display()
                )));
            }
        }
    }
    let parse_all = |list: &[String]| {
        list.iter()
            .map(|h| routes::parse_header(h).map_err(invalid))
            .collect::<io::Result<Vec<_>>>()
    };
    let mode = if args.framed {
        Mode::Framed
    } else if args.binary {
        Mode::Binary
    } else {
        Mode::Text
    };
    Ok(App {
        target,
        mode,
        output: args.output(),
        // A line longer than this goes in pieces: the client's limit if it has one (a
        // browser has none), else 1 MiB, so that a program's endless line is not buffered.
        out_limit: args.max_message().unwrap_or(1 << 20),
        origin: origin::Policy::new(args.sameorigin, args.origin.as_deref()),
        headers: parse_all(&args.header)?,
        headers_ws: parse_all(&args.header_ws)?,
        headers_http: parse_all(&args.header_http)?,
        env: env::Base::new(&args.passenv, args.ssl),
        forks: Arc::default(),
        max_forks: args.max_forks(),
        close_extra: args.close_extra(),
        subprotocols: args.subprotocol.clone(),
        reverse_lookup: args.reverselookup,
        devconsole: args.devconsole,
        static_dir: args.staticdir.clone(),
        cgi_dir: args.cgidir.clone(),
    })
}

fn websocket_options(args: &Args) -> weft::Options {
    let mut options = weft::Options::default();
    options.config.max_message_size = args.max_message().map(|n| n as u64);
    if args.pingms > 0 {
        options.ping_interval = Some(Duration::from_millis(args.pingms));
        options.pong_timeout = Duration::from_millis(args.pingms.saturating_mul(2));
    }
    if args.deflate {
        options.deflate = Some(weft::proto::deflate::DeflateConfig::default());
    }
    options
}

async fn serve(args: Args, app: Arc<App>) -> io::Result<()> {
    // Enough for every program to go down the whole ladder, and its close handshake.
    let grace = Duration::from_secs(10) + args.close_extra() * 4;
    let builder = Server::builder()
        .header_timeout(Duration::from_millis(args.handshakems.max(1)))
        .shutdown_grace(grace)
        .websocket_options(websocket_options(&args));
    let handler_app = app.clone();
    let handler = handler_fn(move |req| routes::handle(handler_app.clone(), req));
    if args.inetd {
        let server = builder.build(handler)?;
        on_signal(vec![server.shutdown_handle()]);
        let (stream, info) = listen::inetd_stream()?;
        server.serve_connection(stream, info).await;
        return Ok(());
    }
    let tls = listen::tls_config(&args)?;
    let builder = listen::bind(builder, &args, tls.as_ref())?;
    let server = builder.build(handler)?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    log::log(
        Level::Info,
        "server",
        "",
        format_args!(
            "Serving using application: {}",
            describe_target(&app.target)
        ),
    );
    for addr in server.local_addrs() {
        log::log(
            Level::Info,
            "server",
            "",
            format_args!("Starting WebSocket server: {scheme}://{addr}/"),
        );
    }
    let mut handles = vec![server.shutdown_handle()];
    let mut redirect = None;
    if let Some(port) = args.redirport {
        let redirect_server = redirect_server(&args, port)?;
        handles.push(redirect_server.shutdown_handle());
        redirect = Some(tokio::spawn(redirect_server.serve()));
    }
    on_signal(handles);
    let result = if args.uring {
        // Runtimes of its own, one per core, each with its ring; this runtime keeps the
        // signals and the redirect server.
        match tokio::task::spawn_blocking(move || server.run(Model::Uring(None))).await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(format!(
                "the server's threads failed: {e}"
            ))),
        }
    } else {
        server.serve().await
    };
    if let Some(r) = redirect {
        let _ = r.await;
    }
    log::log(Level::Info, "server", "", format_args!("stopped"));
    result
}

fn describe_target(target: &script::Target) -> String {
    match target {
        script::Target::Command { program, args } => {
            let mut s = program.display().to_string();
            for a in args {
                s.push(' ');
                s.push_str(&a.to_string_lossy());
            }
            s
        }
        script::Target::Dir(d) => format!("scripts in {}", d.display()),
    }
}

/// `--redirport`: a plain HTTP listener answering every request with a redirect to the
/// same path on the main port (https with `--ssl`).
fn redirect_server(args: &Args, port: u16) -> io::Result<Server<impl weft::server::Handler>> {
    let scheme = if args.ssl { "https" } else { "http" };
    let main_port = args.tcp_port();
    let mut redirect_args = args.clone();
    redirect_args.port = Some(port);
    let mut builder = Server::builder();
    for a in listen::tcp_addrs(&redirect_args)? {
        match listen::tcp_listener(a) {
            Ok(l) => builder = builder.listener(l, None),
            // No IPv6 here: IPv4 is enough.
            Err(e) if a.is_ipv6() && args.address.is_empty() => {
                tracing::debug!("no redirect listener on {a}: {e}");
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("--redirport on {a}: {e}"))),
        }
    }
    builder.build(handler_fn(
        move |req: http::Request<hyper::body::Incoming>| async move {
            let host = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            let name = match host.rsplit_once(':') {
                Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => host,
            };
            let default = if scheme == "https" { 443 } else { 80 };
            let authority = if main_port == default {
                name.to_owned()
            } else {
                format!("{name}:{main_port}")
            };
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let location = format!("{scheme}://{authority}{path}");
            let mut resp = routes::status(http::StatusCode::MOVED_PERMANENTLY, "Moved Permanently");
            if let Ok(v) = http::HeaderValue::from_str(&location) {
                resp.headers_mut().insert(http::header::LOCATION, v);
            }
            resp
        },
    ))
}

/// SIGTERM or SIGINT: a graceful shutdown (Close 1001 to every client, every program
/// ended). A second one ends the daemon at once.
fn on_signal(handles: Vec<Shutdown>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        log::log(Level::Info, "server", "", format_args!("shutting down"));
        for h in &handles {
            h.shutdown();
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        log::log(
            Level::Info,
            "server",
            "",
            format_args!("second signal: exiting now"),
        );
        std::process::exit(1);
    });
}
