//! websockd end to end: each of websocketd's flags (and websockd's own) with a real
//! daemon, real programs and real clients on 127.0.0.1.

mod common;
use common::*;
use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use weft::proto::handshake::ClientRequest;
use weft::proto::{CloseCode, Message};

/// The program's environment, as `env` prints it, one message a line.
async fn env_of(ws: &mut Client) -> HashMap<String, String> {
    let (msgs, _) = recv_all(ws).await;
    msgs.iter()
        .filter_map(|m| {
            let line = String::from_utf8_lossy(m.payload()).into_owned();
            let (k, v) = line.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn cgi_environment() {
    let d = Daemon::start_with(
        &["--passenv=PATH,WSD_PASSED", "env"],
        &[("WSD_PASSED", "yes\nmulti"), ("WSD_HIDDEN", "no")],
    );
    let request = ClientRequest::builder(&d.url("/some/path?q=1&r=2"))
        .header("X-Custom", "v1")
        .origin("http://page.example")
        .build()
        .unwrap();
    let (mut ws, _) = weft::tokio::connect_request(&request, weft::Options::default())
        .await
        .unwrap();
    let local_port = match ws.get_ref() {
        weft::tokio::MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap().port(),
        _ => unreachable!("ws:// is plain TCP"),
    };
    let env = env_of(&mut ws).await;
    let get = |k: &str| env.get(k).map(String::as_str);
    assert!(get("SERVER_SOFTWARE").unwrap().starts_with("websockd/"));
    assert_eq!(get("REMOTE_ADDR"), Some("127.0.0.1"));
    assert_eq!(get("REMOTE_HOST"), Some("127.0.0.1"));
    assert_eq!(get("REMOTE_PORT"), Some(local_port.to_string().as_str()));
    assert_eq!(get("SERVER_NAME"), Some("127.0.0.1"));
    assert_eq!(get("SERVER_PORT"), Some(d.port.to_string().as_str()));
    assert_eq!(get("SERVER_PROTOCOL"), Some("HTTP/1.1"));
    assert_eq!(get("GATEWAY_INTERFACE"), Some("CGI/1.1"));
    assert_eq!(get("REQUEST_METHOD"), Some("GET"));
    assert_eq!(get("SCRIPT_NAME"), Some("/"));
    assert_eq!(get("PATH_INFO"), Some("/some/path"));
    assert_eq!(get("PATH_TRANSLATED"), Some("/some/path"));
    assert_eq!(get("QUERY_STRING"), Some("q=1&r=2"));
    assert_eq!(get("REQUEST_URI"), Some("/some/path?q=1&r=2"));
    assert!(
        get("UNIQUE_ID").is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    );
    for empty in [
        "AUTH_TYPE",
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "REMOTE_IDENT",
        "REMOTE_USER",
    ] {
        assert_eq!(get(empty), Some(""), "{empty}");
    }
    assert_eq!(
        get("HTTP_HOST"),
        Some(format!("127.0.0.1:{}", d.port).as_str())
    );
    assert_eq!(get("HTTP_X_CUSTOM"), Some("v1"));
    assert_eq!(get("HTTP_ORIGIN"), Some("http://page.example"));
    assert!(get("HTTP_SEC_WEBSOCKET_KEY").is_some());
    assert_eq!(
        get("WSD_PASSED"),
        Some("yes multi"),
        "newlines become spaces"
    );
    assert_eq!(get("WSD_HIDDEN"), None, "only --passenv variables pass");
    assert_eq!(get("HTTPS"), None);
    assert!(get("PATH").is_some());
}

#[tokio::test]
async fn default_passenv_is_path_and_ld_library_path() {
    let d = Daemon::start_with(&["env"], &[("WSD_HIDDEN", "no"), ("LD_LIBRARY_PATH", "/x")]);
    let mut ws = d.connect("/").await;
    let env = env_of(&mut ws).await;
    assert!(env.contains_key("PATH"));
    assert_eq!(env.get("LD_LIBRARY_PATH").map(String::as_str), Some("/x"));
    assert!(!env.contains_key("WSD_HIDDEN"));
}

#[tokio::test]
async fn reverselookup_names_the_client() {
    let d = Daemon::start(&["--reverselookup", "sh", "-c", "echo $REMOTE_HOST"]);
    let mut ws = d.connect("/").await;
    // 127.0.0.1 is `localhost` in /etc/hosts here.
    assert_eq!(recv_text(&mut ws).await, "localhost");
}

#[tokio::test]
async fn headers_on_each_kind_of_response() {
    let d = Daemon::start(&[
        "--header=X-All: 1",
        "--header-ws",
        "X-Ws: 2",
        "--header-http=X-Http: 3",
        "cat",
    ]);
    let plain = d.get("/");
    assert!(plain.starts_with("HTTP/1.1 404"), "{plain}");
    let plain = plain.to_ascii_lowercase();
    assert!(
        plain.contains("x-all: 1") && plain.contains("x-http: 3") && !plain.contains("x-ws"),
        "{plain}"
    );
    let (_, response) = weft::tokio::connect_url(&d.url("/"), weft::Options::default())
        .await
        .unwrap();
    let h = response.headers();
    let has = |name: &str| h.contains_key(name);
    assert!(has("x-all") && has("x-ws") && !has("x-http"), "{h:?}");
}

/// A raw upgrade request with `extra` headers; the status line's code (the connection may
/// stay open: HTTP/1.1 keeps it alive after a refusal).
fn upgrade_status(d: &Daemon, path: &str, extra: &str) -> u16 {
    upgrade_status_open(d, path, extra).0
}

fn upgrade_status_open(d: &Daemon, path: &str, extra: &str) -> (u16, std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
            d.port
        )
        .as_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    (String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0), s)
}

#[tokio::test]
async fn origin_allow_list() {
    let d = Daemon::start(&["--origin=good.example,https://secure.example:8443", "cat"]);
    let (ok, _s) = upgrade_status_open(&d, "/", "Origin: http://good.example:1234\r\n");
    assert_eq!(ok, 101);
    assert_eq!(
        upgrade_status(&d, "/", "Origin: http://evil.example\r\n"),
        403
    );
    assert_eq!(upgrade_status(&d, "/", ""), 403, "no Origin");
    let (ok, _s2) = upgrade_status_open(&d, "/", "Origin: https://secure.example:8443\r\n");
    assert_eq!(ok, 101);
    assert_eq!(
        upgrade_status(&d, "/", "Origin: http://secure.example:8443\r\n"),
        403
    );
}

#[tokio::test]
async fn same_origin() {
    let d = Daemon::start(&["--sameorigin", "cat"]);
    let (ok, _s) =
        upgrade_status_open(&d, "/", &format!("Origin: http://127.0.0.1:{}\r\n", d.port));
    assert_eq!(ok, 101);
    assert_eq!(
        upgrade_status(&d, "/", "Origin: http://127.0.0.1:1\r\n"),
        403
    );
}

#[tokio::test]
async fn maxforks_refuses_with_429() {
    let d = Daemon::start(&["--maxforks=1", "cat"]);
    let mut first = d.connect("/").await;
    assert_eq!(upgrade_status(&d, "/", ""), 429);
    first.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(d.wait_no_children().is_empty());
    // The slot is free again (released once the group is gone, just after the program is
    // reaped: retried, bounded).
    let start = std::time::Instant::now();
    let mut again = loop {
        match weft::tokio::connect_url(&d.url("/"), weft::Options::default()).await {
            Ok((ws, _)) => break ws,
            Err(e) => {
                assert!(start.elapsed() < PATIENCE, "the slot was never freed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    again.send("x").await.unwrap();
    assert_eq!(recv_text(&mut again).await, "x");
}

#[tokio::test]
async fn dir_serves_each_script_at_its_path() {
    let dir = scratch("dir");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    script(
        &dir.join("sub"),
        "who.sh",
        "echo \"$SCRIPT_NAME|$PATH_INFO\"",
    );
    let d = Daemon::start(&[&format!("--dir={}", dir.display())]);
    let mut ws = d.connect("/sub/who.sh/more/info").await;
    assert_eq!(recv_text(&mut ws).await, "/sub/who.sh|/more/info");
    assert_eq!(upgrade_status(&d, "/sub/missing.sh", ""), 404);
    assert_eq!(upgrade_status(&d, "/sub", ""), 404);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_program_that_cannot_start_is_a_500() {
    let dir = scratch("nostart");
    std::fs::write(dir.join("notexec"), "data").unwrap();
    let d = Daemon::start(&[&format!("--dir={}", dir.display())]);
    assert_eq!(upgrade_status(&d, "/notexec", ""), 500);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn staticdir_serves_files_and_nothing_outside() {
    let dir = scratch("static");
    std::fs::write(dir.join("hello.txt"), "static hello").unwrap();
    let outside = scratch("static-outside");
    std::fs::write(outside.join("secret"), "secret").unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), dir.join("link")).unwrap();
    let d = Daemon::start(&[&format!("--staticdir={}", dir.display()), "cat"]);
    let r = d.get("/hello.txt");
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("static hello"),
        "{r}"
    );
    assert!(d.get("/link").starts_with("HTTP/1.1 404"));
    assert!(d.get("/../static-outside/secret").starts_with("HTTP/1.1 4"));
    assert!(d.get("/nothing").starts_with("HTTP/1.1 404"));
    // WebSockets are still served.
    let mut ws = d.connect("/").await;
    ws.send("ws").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "ws");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(outside);
}

#[tokio::test]
async fn cgidir_runs_cgi_programs() {
    let dir = scratch("cgi");
    script(
        &dir,
        "hello.cgi",
        "echo 'Content-Type: text/plain'\necho 'X-From: cgi'\necho\n\
         echo \"method=$REQUEST_METHOD query=$QUERY_STRING len=$CONTENT_LENGTH\"\ncat",
    );
    script(
        &dir,
        "missing.cgi",
        "echo 'Status: 404 Gone Fishing'\necho\necho nope",
    );
    let d = Daemon::start(&[&format!("--cgidir={}", dir.display()), "cat"]);
    let r = d.http(&format!(
        "POST /hello.cgi?a=b HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbody",
        d.port
    ));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.to_ascii_lowercase().contains("x-from: cgi"), "{r}");
    assert!(r.contains("method=POST query=a=b len=4\nbody"), "{r}");
    let r = d.get("/missing.cgi");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(d.children().is_empty() || d.wait_no_children().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn devconsole_page_on_plain_get() {
    let d = Daemon::start(&["--devconsole", "cat"]);
    let r = d.get("/any/path");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.contains("text/html") && r.contains("<html")
            || r.contains("<!doctype html")
            || r.contains("<!DOCTYPE html")
    );
    let no_console = Daemon::start(&["cat"]);
    assert!(no_console.get("/").starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn unixsocket_alone_and_beside_tcp() {
    let dir = scratch("unix");
    let path = dir.join("wsd.sock");
    let mut d = Daemon::spawn(
        &[format!("--unixsocket={}", path.display()), "cat".into()],
        &[],
        0,
    );
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < PATIENCE,
            "no socket; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let io = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (mut ws, _) = weft::tokio::connect("ws://localhost/", io).await.unwrap();
    ws.send("over unix").await.unwrap();
    match tokio::time::timeout(PATIENCE, ws.recv()).await {
        Ok(Ok(Some(Message::Text(t)))) => assert_eq!(t.as_str(), "over unix"),
        other => panic!("{other:?}"),
    }
    // Unix only: no TCP listener on port 80 (which would fail unprivileged anyway).
    assert!(!d.log_text().contains(":80"), "{}", d.log_text());
    drop(ws);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit();
    // Beside TCP.
    let both = Daemon::start(&[&format!("--unixsocket={}", path.display()), "cat"]);
    // A path a live server listens on is not taken over.
    let out = Command::new(env!("CARGO_BIN_EXE_websockd"))
        .args([&format!("--unixsocket={}", path.display()), "cat"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let mut tcp = both.connect("/").await;
    tcp.send("tcp").await.unwrap();
    assert_eq!(recv_text(&mut tcp).await, "tcp");
    assert!(tokio::net::UnixStream::connect(&path).await.is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

struct Pki {
    dir: std::path::PathBuf,
    roots: Arc<rustls::RootCertStore>,
    client_cert: rustls::pki_types::CertificateDer<'static>,
    client_key: Vec<u8>,
}

fn pki(name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let dir = scratch(name);
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["client".to_string()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("cert.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    Pki {
        dir,
        roots: Arc::new(roots),
        client_cert: client.der().clone(),
        client_key: client_key.serialize_der(),
    }
}

fn tls_options(config: rustls::ClientConfig) -> weft::Options {
    let mut options = weft::Options::default();
    options.tls = Some(Arc::new(config));
    options
}

#[tokio::test]
async fn ssl_serves_wss_and_sets_https() {
    let p = pki("ssl");
    let d = Daemon::start(&[
        "--ssl",
        &format!("--sslcert={}", p.dir.join("cert.pem").display()),
        &format!("--sslkey={}", p.dir.join("key.pem").display()),
        "sh",
        "-c",
        "echo \"$HTTPS $SERVER_PORT\"",
    ]);
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(p.roots.clone())
        .with_no_client_auth();
    let url = format!("wss://localhost:{}/", d.port);
    let (mut ws, _) = weft::tokio::connect_url(&url, tls_options(config))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut ws).await, format!("on {}", d.port));
    let _ = std::fs::remove_dir_all(&p.dir);
}

#[tokio::test]
async fn sslca_requires_a_client_certificate() {
    let p = pki("sslca");
    let d = Daemon::start(&[
        "--ssl",
        &format!("--sslcert={}", p.dir.join("cert.pem").display()),
        &format!("--sslkey={}", p.dir.join("key.pem").display()),
        &format!("--sslca={}", p.dir.join("ca.pem").display()),
        "cat",
    ]);
    let url = format!("wss://localhost:{}/", d.port);
    let anonymous = rustls::ClientConfig::builder()
        .with_root_certificates(p.roots.clone())
        .with_no_client_auth();
    let refused = async {
        let (mut ws, _) = weft::tokio::connect_url(&url, tls_options(anonymous)).await?;
        ws.send("x").await?;
        ws.recv().await
    };
    assert!(
        refused.await.is_err(),
        "a client without a certificate got through"
    );
    let with_cert = rustls::ClientConfig::builder()
        .with_root_certificates(p.roots.clone())
        .with_client_auth_cert(
            vec![p.client_cert.clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(p.client_key.clone().into()),
        )
        .unwrap();
    let (mut ws, _) = weft::tokio::connect_url(&url, tls_options(with_cert))
        .await
        .unwrap();
    ws.send("certified").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "certified");
    let _ = std::fs::remove_dir_all(&p.dir);
}

#[tokio::test]
async fn ssl_flags_are_checked() {
    for args in [
        vec!["--ssl", "cat"],
        vec!["--sslcert=/x", "cat"],
        vec!["--binary", "--passstderr", "cat"],
        vec!["--loglevel=chatty", "cat"],
        vec!["--port=1"],
        vec!["no-such-program-anywhere"],
        vec!["--dir=/nonexistent-dir", "--port=1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_websockd"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: an explanation");
    }
}

#[tokio::test]
async fn help_version_license_and_bad_flags() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_websockd"))
            .args(args)
            .output()
            .unwrap()
    };
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--port",
        "--address",
        "--unixsocket",
        "--sameorigin",
        "--origin",
        "--ssl",
        "--sslcert",
        "--sslkey",
        "--sslca",
        "--redirport",
        "--passenv",
        "--binary",
        "--passstderr",
        "--reverselookup",
        "--dir",
        "--staticdir",
        "--cgidir",
        "--maxforks",
        "--maxframesize",
        "--closems",
        "--pingms",
        "--header",
        "--header-ws",
        "--header-http",
        "--devconsole",
        "--loglevel",
        "--version",
        "--framed",
        "--deflate",
        "--subprotocol",
        "--inetd",
    ] {
        assert!(text.contains(flag), "help lacks {flag}");
    }
    assert!(run(&["-help"]).status.success());
    let v = run(&["--version"]);
    assert!(v.status.success() && String::from_utf8_lossy(&v.stdout).starts_with("websockd "));
    assert!(run(&["--license"]).status.success());
    assert_eq!(run(&["--no-such-flag", "cat"]).status.code(), Some(2));
    assert_eq!(run(&["--port=notanumber", "cat"]).status.code(), Some(2));
}

#[tokio::test]
async fn go_style_single_dash_flags() {
    let port = free_port();
    let d = Daemon::spawn(
        &[
            "-port".into(),
            port.to_string(),
            "-address".into(),
            "127.0.0.1".into(),
            "-binary=false".into(),
            "cat".into(),
        ],
        &[],
        port,
    );
    let mut ws = d.connect("/").await;
    ws.send("go").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "go");
}

#[tokio::test]
async fn inetd_serves_the_connection_on_stdin() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/");
    let client = tokio::spawn(async move {
        let (mut ws, _) = weft::tokio::connect_url(&url, weft::Options::default())
            .await
            .unwrap();
        ws.send("via inetd").await.unwrap();
        let t = recv_text(&mut ws).await;
        let env = recv_text(&mut ws).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        (t, env)
    });
    let (sock, _) = tokio::task::spawn_blocking(move || listener.accept())
        .await
        .unwrap()
        .unwrap();
    let out = sock.try_clone().unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_websockd"))
        .args([
            "--inetd",
            "sh",
            "-c",
            "read l; echo \"$l\"; echo \"$REMOTE_ADDR\"; cat >/dev/null",
        ])
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(sock)))
        .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(out)))
        .spawn()
        .unwrap();
    let (t, env) = tokio::time::timeout(PATIENCE, client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t, "via inetd");
    assert_eq!(env, "127.0.0.1");
    let status = tokio::task::spawn_blocking(move || daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn systemd_socket_activation() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The listening socket becomes fd 3 of the daemon, as systemd passes it.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" \"$@\" 3<&0 0</dev/null",
            env!("CARGO_BIN_EXE_websockd"),
            "cat",
        ])
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            listener,
        )))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut ws, _) = weft::tokio::connect_url(&url, weft::Options::default())
        .await
        .unwrap();
    ws.send("activated").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "activated");
    drop(ws);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
}

#[tokio::test]
async fn redirport_redirects_to_the_main_port() {
    let redirect = free_port();
    let d = Daemon::start(&[&format!("--redirport={redirect}"), "cat"]);
    let start = std::time::Instant::now();
    let r = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", redirect)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /a/b?c HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            break out;
        }
        assert!(start.elapsed() < PATIENCE);
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(r.starts_with("HTTP/1.1 301"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains(&format!("location: http://127.0.0.1:{}/a/b?c", d.port)),
        "{r}"
    );
}

#[tokio::test]
async fn deflate_and_subprotocols() {
    let d = Daemon::start(&[
        "--deflate",
        "--subprotocol=chat",
        "--subprotocol=json",
        "sh",
        "-c",
        "echo \"$WEBSOCKET_PROTOCOL\"; cat",
    ]);
    let mut options = weft::Options::default();
    options.deflate = Some(weft::proto::deflate::DeflateConfig::default());
    let request = ClientRequest::builder(&d.url("/"))
        .protocols(["json", "other"])
        .extensions(&[options.deflate.as_ref().unwrap().offer()])
        .build()
        .unwrap();
    let (mut ws, response) = weft::tokio::connect_request(&request, options)
        .await
        .unwrap();
    let header = |n: &str| {
        response
            .headers()
            .get(n)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    assert_eq!(header("sec-websocket-protocol").as_deref(), Some("json"));
    assert!(header("sec-websocket-extensions").is_some_and(|e| e.contains("permessage-deflate")));
    assert_eq!(recv_text(&mut ws).await, "json");
    let big = "compressible ".repeat(1000);
    ws.send(big.as_str()).await.unwrap();
    assert_eq!(recv_text(&mut ws).await, big);
}

#[tokio::test]
async fn websockets_over_http2() {
    let d = Daemon::start(&["cat"]);
    let h2 = weft::tokio::H2Connection::connect(&d.url("/"), &weft::Options::default())
        .await
        .unwrap();
    let (mut a, _) = h2
        .websocket(&d.url("/a"), weft::Options::default())
        .await
        .unwrap();
    let (mut b, _) = h2
        .websocket(&d.url("/b"), weft::Options::default())
        .await
        .unwrap();
    a.send("over h2 a").await.unwrap();
    b.send("over h2 b").await.unwrap();
    for (ws, want) in [(&mut a, "over h2 a"), (&mut b, "over h2 b")] {
        match tokio::time::timeout(PATIENCE, ws.recv()).await {
            Ok(Ok(Some(Message::Text(t)))) => assert_eq!(t.as_str(), want),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn loglevel_filters_access_lines() {
    let d = Daemon::start(&["sh", "-c", "echo hi"]);
    let mut ws = d.connect("/").await;
    let _ = recv_all(&mut ws).await;
    let quiet = Daemon::start(&["--loglevel=error", "sh", "-c", "echo hi"]);
    let mut ws = quiet.connect("/").await;
    let _ = recv_all(&mut ws).await;
    let start = std::time::Instant::now();
    while !d.log_text().contains("DISCONNECT") {
        assert!(start.elapsed() < PATIENCE, "{}", d.log_text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(d.log_text().contains("| ACCESS | session |"));
    assert!(!quiet.log_text().contains("ACCESS"), "{}", quiet.log_text());
}

/// The daemon's io_uring descriptors (`anon_inode:[io_uring]` in /proc/PID/fd).
fn io_uring_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.to_string_lossy().contains("io_uring"))
                .count()
        })
        .unwrap_or(0)
}

/// --uring: thread per core with each thread's connections on an io_uring ring; the
/// program, its environment, its exit status and a graceful shutdown work as without it.
/// Where io_uring is forbidden the daemon says so in one line and serves without it.
#[tokio::test]
async fn uring_serves_the_same() {
    let mut d = Daemon::start(&[
        "--uring",
        "sh",
        "-c",
        "echo \"$REMOTE_ADDR\"; sed -u '/^quit$/Q'; exit 3",
    ]);
    let mut ws = d.connect("/").await;
    assert_eq!(recv_text(&mut ws).await, "127.0.0.1");
    ws.send("early").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "early");
    let available = weft::uring::probe().is_ok();
    if available {
        assert!(io_uring_fds(d.pid()) >= 1, "no io_uring ring in the daemon");
    } else {
        assert!(
            d.log_text().contains("io_uring is unavailable"),
            "{}",
            d.log_text()
        );
    }
    let plain = Daemon::start(&["cat"]);
    assert_eq!(io_uring_fds(plain.pid()), 0, "a ring without --uring");
    for n in [1usize, 1000, 200_000] {
        let line = "x".repeat(n);
        ws.send(line.as_str()).await.unwrap();
        assert_eq!(recv_text(&mut ws).await, line);
    }
    ws.send("quit").await.unwrap();
    let (_, close) = recv_all(&mut ws).await;
    assert_eq!(
        close.map(|c| (c.0, c.1)),
        Some((CloseCode::INTERNAL_ERROR, "exit status 3".to_string()))
    );
    // A second client, then SIGTERM: Close 1001, the daemon exits 0.
    let mut b = d.connect("/").await;
    assert_eq!(recv_text(&mut b).await, "127.0.0.1");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let (_, close) = recv_all(&mut b).await;
    assert_eq!(close.map(|c| c.0), Some(CloseCode::GOING_AWAY));
    let status = d.wait_exit();
    assert!(status.success(), "{status:?}; log:\n{}", d.log_text());
}
