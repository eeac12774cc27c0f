//! TLS end to end over 127.0.0.1, with a certificate made at test time (rcgen): the async
//! and the blocking driver, as server and client, with the same API as plain TCP.

use std::sync::Arc;
use std::time::{Duration, Instant};
use weft::{CloseCode, Message, Options};

struct TestCert {
    cert_pem: String,
    key_pem: String,
}

fn make_cert() -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn client_options(cert: &TestCert) -> Options {
    let mut options = Options::default();
    options.tls = Some(weft::tls::client_config_with_roots(cert.cert_pem.as_bytes()).unwrap());
    options
}

#[tokio::test]
async fn async_server_and_client_over_tls() {
    let cert = make_cert();
    let server_config =
        weft::tls::server_config_from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let acceptor = weft::tls::tokio_rustls::TlsAcceptor::from(server_config);
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut ws = weft::tokio::accept(tls).await.unwrap();
        while let Some(m) = ws.recv().await.unwrap() {
            ws.send(m).await.unwrap();
        }
        ws.connection().close_status()
    });
    let run = async {
        let url = format!("wss://localhost:{port}/secure");
        let (mut ws, _) = weft::tokio::connect_url(&url, client_options(&cert))
            .await
            .unwrap();
        assert!(matches!(ws.get_ref(), weft::tokio::MaybeTlsStream::Tls(_)));
        ws.send("secret").await.unwrap();
        ws.send(vec![5u8; 100_000]).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::from("secret")));
        assert_eq!(
            ws.recv().await.unwrap(),
            Some(Message::from(vec![5u8; 100_000]))
        );
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert_eq!(server.await.unwrap(), CloseCode::NORMAL);
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap();
}

#[tokio::test]
async fn untrusted_certificate_is_refused() {
    let cert = make_cert();
    let other = make_cert();
    let server_config =
        weft::tls::server_config_from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let acceptor = weft::tls::tokio_rustls::TlsAcceptor::from(server_config);
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let r =
        weft::tokio::connect_url(&format!("wss://localhost:{port}/"), client_options(&other)).await;
    assert!(matches!(r, Err(weft::Error::Io(_))), "{:?}", r.map(|_| ()));
}

#[test]
fn blocking_server_and_client_over_tls() {
    let cert = make_cert();
    let server_config =
        weft::tls::server_config_from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
            .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = weft::tls::rustls::ServerConnection::new(Arc::clone(&server_config)).unwrap();
        let tls = weft::tls::rustls::StreamOwned::new(conn, tcp);
        let mut ws = weft::blocking::accept(tls).unwrap();
        let deadline = || Some(Instant::now() + Duration::from_secs(10));
        while let Some(m) = ws.recv(deadline()).unwrap() {
            ws.send(m, deadline()).unwrap();
        }
        ws.connection().close_status()
    });
    let deadline = || Some(Instant::now() + Duration::from_secs(10));
    let (mut ws, _) =
        weft::blocking::connect(&format!("wss://localhost:{port}/"), client_options(&cert))
            .unwrap();
    ws.send("blocking secret", deadline()).unwrap();
    assert_eq!(
        ws.recv(deadline()).unwrap(),
        Some(Message::from("blocking secret"))
    );
    ws.close(CloseCode::GOING_AWAY, "", deadline()).unwrap();
    assert_eq!(server.join().unwrap(), CloseCode::GOING_AWAY);
}
