//! The daemon's HTTP handler, on `weft::server`: a WebSocket request starts a program and
//! bridges it; a plain request gets the dev console, a CGI program, a static file or 404.
//!
//! A WebSocket request is checked in this order: the handshake itself (weft-proto: a 4xx
//! with its reason), the origin (403), the program its path names (404), `--maxforks`
//! (429); then the program is started *before* the `101` goes out, so that a program that
//! cannot start is a 500, not a WebSocket that closes at once.

use crate::bridge::{self, End, Settings};
use crate::cli::{Level, Output};
use crate::framing::Mode;
use crate::origin::Policy;
use crate::process::{Forks, Program, Spec};
use crate::script::Target;
use crate::{cgi, env, log, static_files};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft::server::{is_websocket_request, Addr, Body, BoxError, ConnInfo, WebSocketUpgrade};
use weft::Accept;

/// The body of every response the daemon sends.
pub type ResBody = UnsyncBoxBody<Bytes, BoxError>;

/// A header from `--header`, `--header-ws` or `--header-http`.
pub type Header = (HeaderName, HeaderValue);

/// Everything the handler needs, shared by all connections.
#[derive(Debug)]
pub struct App {
    /// The program(s).
    pub target: Target,
    /// Text, binary or framed.
    pub mode: Mode,
    /// Plain or tagged (`--passstderr`) output.
    pub output: Output,
    /// The longest message sent to a client.
    pub out_limit: usize,
    /// `--origin`, `--sameorigin`.
    pub origin: Policy,
    /// `--header`.
    pub headers: Vec<Header>,
    /// `--header-ws`.
    pub headers_ws: Vec<Header>,
    /// `--header-http`.
    pub headers_http: Vec<Header>,
    /// The environment's fixed part.
    pub env: env::Base,
    /// Programs running.
    pub forks: Arc<Forks>,
    /// `--maxforks`.
    pub max_forks: Option<usize>,
    /// `--closems`.
    pub close_extra: Duration,
    /// `--subprotocol`.
    pub subprotocols: Vec<String>,
    /// `--reverselookup`.
    pub reverse_lookup: bool,
    /// `--devconsole`.
    pub devconsole: bool,
    /// `--staticdir`.
    pub static_dir: Option<PathBuf>,
    /// `--cgidir`.
    pub cgi_dir: Option<PathBuf>,
}

/// The dev console page (`--devconsole`).
pub const DEVCONSOLE: &str = include_str!("devconsole.html");

/// Parses `Name: value` (websocketd's `--header` syntax).
pub fn parse_header(s: &str) -> Result<Header, String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("header {s:?} is not 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|e| format!("header name in {s:?}: {e}"))?;
    let value = HeaderValue::from_str(value.trim_start_matches(' '))
        .map_err(|e| format!("header value in {s:?}: {e}"))?;
    Ok((name, value))
}

/// Answers one request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<ResBody> {
    let context = Context::of(&req);
    if is_websocket_request(&req) {
        let mut resp = websocket(&app, req, &context).await;
        let upgraded = resp.status() == StatusCode::SWITCHING_PROTOCOLS
            || (context.connect && resp.status() == StatusCode::OK);
        if !upgraded {
            add_headers(&mut resp, &app.headers);
            add_headers(&mut resp, &app.headers_http);
        }
        return resp.map(box_full);
    }
    let mut resp = plain(&app, req, &context).await;
    add_headers(&mut resp, &app.headers);
    add_headers(&mut resp, &app.headers_http);
    resp
}

fn add_headers<B>(resp: &mut Response<B>, headers: &[Header]) {
    for (n, v) in headers {
        resp.headers_mut().append(n.clone(), v.clone());
    }
}

/// A whole body, boxed.
pub fn box_full(body: Body) -> ResBody {
    body.map_err(|never| match never {}).boxed_unsync()
}

/// A short text answer.
pub fn status(code: StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(format!("{} {}\n", code.as_u16(), text)));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// What the log lines of one request say about it.
struct Context {
    text: String,
    connect: bool,
}

impl Context {
    fn of(req: &Request<Incoming>) -> Context {
        let remote = match ConnInfo::of(req).as_ref().map(ConnInfo::peer) {
            Some(Addr::Tcp(a)) => a.to_string(),
            Some(Addr::Unix(_)) => "unix-socket".to_owned(),
            _ => "-".to_owned(),
        };
        Context {
            text: format!("remote:'{remote}' url:'{}'", req.uri()),
            connect: req.method() == http::Method::CONNECT,
        }
    }
}

async fn websocket(app: &App, mut req: Request<Incoming>, ctx: &Context) -> Response<Body> {
    let upgrade = match WebSocketUpgrade::from_request(&mut req) {
        Ok(u) => u,
        Err(refusal) => {
            log::log(
                Level::Access,
                "http",
                &ctx.text,
                format_args!("BAD HANDSHAKE: {}", refusal.status()),
            );
            return refusal.map(Body::from);
        }
    };
    let info = upgrade.conn_info().cloned();
    let tls = info.as_ref().is_some_and(ConnInfo::is_tls);
    let origin = req
        .headers()
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    if !app.origin.allows(origin, host, tls) {
        log::log(
            Level::Access,
            "session",
            &ctx.text,
            format_args!("ORIGIN REFUSED: {}", origin.unwrap_or("(none)")),
        );
        return status(StatusCode::FORBIDDEN, "Forbidden: origin not allowed");
    }
    let Some(script) = app.target.resolve(req.uri().path()) else {
        log::log(
            Level::Access,
            "session",
            &ctx.text,
            format_args!("NOT FOUND"),
        );
        return status(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(slot) = app.forks.acquire(app.max_forks) else {
        log::log(
            Level::Error,
            "http",
            &ctx.text,
            format_args!("max of possible forks already active, upgrade rejected"),
        );
        return status(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    };
    let upgrade = upgrade.protocols(app.subprotocols.iter().cloned());
    let selected = upgrade.selected_protocol().map(str::to_owned);
    let remote_host = match (app.reverse_lookup, info.as_ref().map(ConnInfo::peer)) {
        (true, Some(Addr::Tcp(peer))) => {
            let ip = peer.ip();
            tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&ip).ok())
                .await
                .ok()
                .flatten()
        }
        _ => None,
    };
    let id = unique_id();
    let environment = env::build(
        &app.env,
        &env::Request {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            headers: req.headers(),
            info: info.as_ref(),
            script_name: &script.script_name,
            path_info: &script.path_info,
            remote_host: remote_host.as_deref(),
            id: &id,
            protocol: selected.as_deref(),
        },
    );
    let spec = Spec {
        program: script.program.clone().into_os_string(),
        args: app.target.args().to_vec(),
        env: environment,
        dir: None,
        close_extra: app.close_extra,
    };
    let program = match Program::spawn(&spec, Some(slot)) {
        Ok(p) => p,
        Err(e) => {
            log::log(
                Level::Error,
                "process",
                &ctx.text,
                format_args!("could not launch {}: {e}", script.program.display()),
            );
            return status(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let session = format!(
        "{} id:'{id}' command:'{}' pid:'{}'",
        ctx.text,
        script.program.display(),
        program.pid
    );
    log::log(Level::Access, "session", &session, format_args!("CONNECT"));
    let mut accept = Accept::new();
    if let Some(p) = &selected {
        accept = accept.protocol(p.clone());
    }
    for (n, v) in app.headers.iter().chain(&app.headers_ws) {
        accept = accept.header(
            n.as_str().to_owned(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        );
    }
    let settings = Settings {
        mode: app.mode,
        output: app.output,
        out_limit: app.out_limit,
    };
    // The handler holds only a box (the upgrade's task holds the handler until hyper hands
    // the stream over), and the connection's future is boxed: one allocation of its own
    // exact size, whatever the size of the upgrade's task around it.
    let parts = Box::new((program, settings, Session(session.into_boxed_str())));
    upgrade.respond(Ok(accept), move |ws| {
        let (program, settings, session) = *parts;
        Box::pin(bridge::run(ws, program, settings, session))
            as Pin<Box<dyn Future<Output = ()> + Send>>
    })
}

/// One WebSocket connection's log lines: the program's stderr and the end.
struct Session(Box<str>);

impl bridge::Report for Session {
    fn stderr_line(&mut self, line: &str) {
        log::log(
            Level::Error,
            "process",
            &self.0,
            format_args!("STDERR: {line}"),
        );
    }

    fn ended(&mut self, end: &End) {
        let how = match end {
            End::ClientGone(None) => "client closed".to_owned(),
            End::ClientGone(Some(e)) => format!("client gone: {e}"),
            End::ProgramExited(s) => crate::process::describe(*s),
            End::BadOutput(e) => format!("bad output: {e}"),
        };
        log::log(
            Level::Access,
            "session",
            &self.0,
            format_args!("DISCONNECT ({how})"),
        );
    }
}

async fn plain(app: &App, req: Request<Incoming>, ctx: &Context) -> Response<ResBody> {
    let get = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
    if app.devconsole && get {
        log::log(Level::Access, "http", &ctx.text, format_args!("DEVCONSOLE"));
        let mut resp = Response::new(Body::from(DEVCONSOLE));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        resp.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        return resp.map(box_full);
    }
    if let Some(dir) = &app.cgi_dir {
        if let Some(script) = cgi::find(dir, req.uri().path()) {
            log::log(Level::Access, "http", &ctx.text, format_args!("CGI"));
            return cgi::run(app, script, req).await;
        }
    }
    if let Some(dir) = &app.static_dir {
        log::log(Level::Access, "http", &ctx.text, format_args!("STATIC"));
        return static_files::serve(dir, req).await;
    }
    log::log(Level::Access, "http", &ctx.text, format_args!("NOT FOUND"));
    status(StatusCode::NOT_FOUND, "Not Found").map(box_full)
}

/// websocketd's `UNIQUE_ID`: the time in nanoseconds, made unique within the daemon.
fn unique_id() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next.to_string(),
            Err(actual) => last = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse() {
        let (n, v) = parse_header("X-Thing:  some value").unwrap();
        assert_eq!(n, "x-thing");
        assert_eq!(v, "some value");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: v").is_err());
    }

    #[test]
    fn unique_ids_are_unique() {
        let a = unique_id();
        let b = unique_id();
        assert_ne!(a, b);
    }
}
