//! `--cgidir`: plain HTTP requests run CGI programs (RFC 3875): the request body on stdin,
//! the CGI environment, and the program's output parsed as a CGI response (its header
//! lines, `Status:`, `Location:`, then the body).

use crate::cli::Level;
use crate::process::{Program, Spec};
use crate::routes::{box_full, status, App, ResBody};
use crate::script::{Script, Target};
use crate::{env, log};
use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::ffi::OsString;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft::server::{Body, ConnInfo};

/// The largest request body handed to a CGI program.
const MAX_BODY: usize = 16 << 20;
/// The largest output read from one.
const MAX_OUTPUT: usize = 64 << 20;

/// The CGI program `path` names in `dir`, if it names one.
pub fn find(dir: &Path, path: &str) -> Option<Script> {
    Target::Dir(dir.to_path_buf()).resolve(path)
}

/// Runs `script` for `req`.
pub async fn run(app: &App, script: Script, req: Request<Incoming>) -> Response<ResBody> {
    let Some(slot) = app.forks.acquire(app.max_forks) else {
        return status(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").map(box_full);
    };
    let info = ConnInfo::of(&req);
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large").map(box_full),
    };
    let mut environment = env::build(
        &app.env,
        &env::Request {
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            headers: &parts.headers,
            info: info.as_ref(),
            script_name: &script.script_name,
            path_info: &script.path_info,
            remote_host: None,
            id: "",
            protocol: None,
        },
    );
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    for (k, v) in &mut environment {
        if k == "CONTENT_LENGTH" && !body.is_empty() {
            *v = OsString::from(body.len().to_string());
        } else if k == "CONTENT_TYPE" {
            *v = OsString::from(&content_type);
        }
    }
    let spec = Spec {
        program: script.program.clone().into_os_string(),
        args: Vec::new(),
        env: environment,
        dir: script.program.parent().map(Path::to_path_buf),
        close_extra: app.close_extra,
    };
    let mut program = match Program::spawn(&spec, Some(slot)) {
        Ok(p) => p,
        Err(e) => {
            log::log(
                Level::Error,
                "cgi",
                "",
                format_args!("could not launch {}: {e}", script.program.display()),
            );
            return status(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                .map(box_full);
        }
    };
    let stdin = program.stdin.take();
    let stdout = program.stdout.take();
    let stderr = program.stderr.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&body).await;
        }
    };
    let read = async move {
        let mut out = Vec::new();
        if let Some(stdout) = stdout {
            let _ = stdout
                .take(MAX_OUTPUT as u64 + 1)
                .read_to_end(&mut out)
                .await;
        }
        out
    };
    let errors = async move {
        let mut err = Vec::new();
        if let Some(stderr) = stderr {
            let _ = stderr.take(64 * 1024).read_to_end(&mut err).await;
        }
        err
    };
    let ((), out, err) = program
        .watching(async { tokio::join!(feed, read, errors) })
        .await;
    for line in String::from_utf8_lossy(&err).lines() {
        log::log(
            Level::Error,
            "cgi",
            &script.program.display().to_string(),
            format_args!("STDERR: {line}"),
        );
    }
    program.stop();
    if out.len() > MAX_OUTPUT {
        return status(StatusCode::BAD_GATEWAY, "Bad Gateway: CGI output too large").map(box_full);
    }
    match parse_response(Bytes::from(out)) {
        Some(resp) => resp.map(box_full),
        None => status(
            StatusCode::BAD_GATEWAY,
            "Bad Gateway: malformed CGI response",
        )
        .map(box_full),
    }
}

/// A CGI program's output as an HTTP response: header lines up to an empty line, then the
/// body. `Status: 404 Not Found` sets the status; a `Location:` alone makes a 302.
pub fn parse_response(out: Bytes) -> Option<Response<Body>> {
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut code = None;
    let mut pos = 0;
    loop {
        let rest = &out[pos..];
        let end = rest.iter().position(|&b| b == b'\n')?;
        let mut line = &rest[..end];
        pos += end + 1;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(line[..colon].trim_ascii()).ok()?;
        let value = line[colon + 1..].trim_ascii();
        if name.as_str() == "status" {
            let digits = value.get(..3)?;
            code = Some(StatusCode::from_bytes(digits).ok()?);
            continue;
        }
        headers.push((name, HeaderValue::from_bytes(value).ok()?));
    }
    let has_location = headers.iter().any(|(n, _)| n == http::header::LOCATION);
    let mut body = BytesMut::from(&out[pos..]);
    let mut resp = Response::new(Body::from(body.split().freeze()));
    *resp.status_mut() = code.unwrap_or(if has_location {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    for (n, v) in headers {
        resp.headers_mut().append(n, v);
    }
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_responses() {
        let r = parse_response(Bytes::from_static(
            b"Content-Type: text/plain\r\nStatus: 404 Nope\r\n\r\nbody",
        ))
        .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "text/plain");
        let r = parse_response(Bytes::from_static(b"Location: /x\n\n")).unwrap();
        assert_eq!(r.status(), 302);
        let r = parse_response(Bytes::from_static(b"X-A: 1\n\nhello")).unwrap();
        assert_eq!(r.status(), 200);
        assert!(parse_response(Bytes::from_static(b"no header end")).is_none());
        assert!(parse_response(Bytes::from_static(b"bad line\n\n")).is_none());
    }
}
