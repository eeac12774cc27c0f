//! The CGI-style environment a program gets (RFC 3875's variables, as websocketd sets
//! them), and nothing else of the daemon's environment but the `--passenv` variables.

use http::HeaderMap;
use std::ffi::OsString;
use weft::server::{Addr, ConnInfo};

/// What every connection's environment shares, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Base {
    /// `SERVER_SOFTWARE`.
    pub server_software: String,
    /// The daemon's variables named by `--passenv` (cleaned), in order.
    pub parent: Vec<(String, String)>,
    /// `--ssl`: `HTTPS=on`, and 443 as the default port.
    pub ssl: bool,
}

impl Base {
    /// Takes the `--passenv` variables (a comma-separated list) from the daemon's own
    /// environment: set and non-empty ones only, newlines turned into spaces, never
    /// `HTTPS` (which only `--ssl` sets).
    pub fn new(passenv: &str, ssl: bool) -> Base {
        let parent = passenv
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty() && *k != "HTTPS")
            .filter_map(|k| {
                let v = std::env::var(k).ok()?;
                let v = clean(&v);
                (!v.is_empty()).then(|| (k.to_owned(), v))
            })
            .collect();
        Base {
            server_software: format!("websockd/{}", env!("CARGO_PKG_VERSION")),
            parent,
            ssl,
        }
    }
}

/// One request's part of the environment.
#[derive(Debug)]
pub struct Request<'a> {
    /// The request method (`CONNECT` of an HTTP/2 WebSocket is shown as `GET`).
    pub method: &'a http::Method,
    /// The request target.
    pub uri: &'a http::Uri,
    /// HTTP/1.1 or HTTP/2.
    pub version: http::Version,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The connection.
    pub info: Option<&'a ConnInfo>,
    /// `SCRIPT_NAME`.
    pub script_name: &'a str,
    /// `PATH_INFO`.
    pub path_info: &'a str,
    /// `REMOTE_HOST` when `--reverselookup` found a name.
    pub remote_host: Option<&'a str>,
    /// `UNIQUE_ID`.
    pub id: &'a str,
    /// The subprotocol selected (`WEBSOCKET_PROTOCOL`, websockd's own).
    pub protocol: Option<&'a str>,
}

/// The whole environment for the program of `req`.
pub fn build(base: &Base, req: &Request<'_>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(32 + req.headers.len());
    let mut set = |k: &str, v: &str| env.push((k.to_owned(), clean(v)));
    set("SERVER_SOFTWARE", &base.server_software);
    for (k, v) in &base.parent {
        set(k, v);
    }
    let (remote_addr, remote_port) = match req.info.map(ConnInfo::peer) {
        Some(Addr::Tcp(a)) => (a.ip().to_string(), a.port().to_string()),
        Some(Addr::Unix(_)) => ("unix-socket".to_owned(), String::new()),
        _ => ("unknown".to_owned(), String::new()),
    };
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default();
    let (server_name, server_port) = host_port(&host, base.ssl);
    let method = if req.method == http::Method::CONNECT {
        "GET"
    } else {
        req.method.as_str()
    };
    let protocol = match req.version {
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    set("REMOTE_ADDR", &remote_addr);
    set("REMOTE_HOST", req.remote_host.unwrap_or(&remote_addr));
    set("SERVER_NAME", &server_name);
    set("SERVER_PORT", &server_port);
    set("SERVER_PROTOCOL", protocol);
    set("GATEWAY_INTERFACE", "CGI/1.1");
    set("REQUEST_METHOD", method);
    set("SCRIPT_NAME", req.script_name);
    set("PATH_INFO", req.path_info);
    set("PATH_TRANSLATED", req.uri.path());
    set("QUERY_STRING", req.uri.query().unwrap_or(""));
    for k in [
        "AUTH_TYPE",
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "REMOTE_IDENT",
        "REMOTE_USER",
    ] {
        set(k, "");
    }
    set("UNIQUE_ID", req.id);
    set("REMOTE_PORT", &remote_port);
    let request_uri = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    set("REQUEST_URI", request_uri);
    if base.ssl {
        set("HTTPS", "on");
    }
    if let Some(p) = req.protocol {
        set("WEBSOCKET_PROTOCOL", p);
    }
    let mut seen_host = false;
    for name in req.headers.keys() {
        let var = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        // httpoxy: a `Proxy:` header must not become the programs' HTTP_PROXY.
        if var == "HTTP_PROXY" {
            continue;
        }
        seen_host |= var == "HTTP_HOST";
        let values: Vec<String> = req
            .headers
            .get_all(name)
            .iter()
            .map(|v| clean(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        set(&var, &values.join(", "));
    }
    if !seen_host && !host.is_empty() {
        // HTTP/2 carries the host in `:authority`.
        set("HTTP_HOST", &host);
    }
    env.into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

/// Newlines become spaces; the ends are trimmed (websocketd's cleaning).
fn clean(v: &str) -> String {
    v.replace(['\n', '\r'], " ").trim().to_owned()
}

/// The server name and port from a Host header (`[v6]:port` too), the port defaulting to
/// 80 or 443.
fn host_port(host: &str, ssl: bool) -> (String, String) {
    let default = if ssl { "443" } else { "80" };
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((name, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').filter(|p| !p.is_empty());
            return (name.to_owned(), port.unwrap_or(default).to_owned());
        }
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (name.to_owned(), port.to_owned())
        }
        _ => (host.to_owned(), default.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(
            host_port("a.example:8080", false),
            ("a.example".into(), "8080".into())
        );
        assert_eq!(
            host_port("a.example", true),
            ("a.example".into(), "443".into())
        );
        assert_eq!(host_port("[::1]:9", false), ("::1".into(), "9".into()));
        assert_eq!(host_port("[::1]", false), ("::1".into(), "80".into()));
    }

    #[test]
    fn headers_become_http_variables() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "h:1".parse().unwrap());
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        headers.insert("proxy", "evil".parse().unwrap());
        let uri: http::Uri = "/p/q?x=1".parse().unwrap();
        let base = Base {
            server_software: "websockd/t".into(),
            parent: vec![("PATH".into(), "/bin".into())],
            ssl: false,
        };
        let req = Request {
            method: &http::Method::GET,
            uri: &uri,
            version: http::Version::HTTP_11,
            headers: &headers,
            info: None,
            script_name: "/",
            path_info: "/p/q",
            remote_host: None,
            id: "7",
            protocol: None,
        };
        let env = build(&base, &req);
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("HTTP_X_MULTI").as_deref(), Some("a, b"));
        assert_eq!(get("HTTP_HOST").as_deref(), Some("h:1"));
        assert_eq!(get("HTTP_PROXY"), None);
        assert_eq!(get("SERVER_PORT").as_deref(), Some("1"));
        assert_eq!(get("QUERY_STRING").as_deref(), Some("x=1"));
        assert_eq!(get("REQUEST_URI").as_deref(), Some("/p/q?x=1"));
        assert_eq!(get("PATH").as_deref(), Some("/bin"));
        assert_eq!(get("HTTPS"), None);
        assert_eq!(get("AUTH_TYPE").as_deref(), Some(""));
    }
}
