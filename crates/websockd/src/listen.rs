//! Where connections come from: the daemon's own listeners (TCP, TLS, a Unix socket),
//! sockets handed over by systemd (`LISTEN_FDS`), or — `--inetd` — the one connection that
//! is the daemon's stdin and stdout. Also `--redirport`'s redirecting listener.

use crate::cli::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::Arc;
use weft::server::{Addr, Builder, ConnInfo, Stream, TransportKind};

/// The TLS configuration of `--ssl`: `--sslcert`, `--sslkey`, and with `--sslca` client
/// certificates required and checked against that CA.
pub fn tls_config(args: &Args) -> io::Result<Option<Arc<rustls::ServerConfig>>> {
    if !args.ssl {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&args.sslcert, &args.sslkey) else {
        return Err(io::Error::other("--ssl needs --sslcert and --sslkey"));
    };
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(&cert.display().to_string(), &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&cert.display().to_string(), &e))?;
    if certs.is_empty() {
        return Err(bad(
            &cert.display().to_string(),
            &"no certificate in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(&key.display().to_string(), &e))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &args.sslca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                CertificateDer::pem_file_iter(ca).map_err(|e| bad(&ca.display().to_string(), &e))?
            {
                let c = c.map_err(|e| bad(&ca.display().to_string(), &e))?;
                roots
                    .add(c)
                    .map_err(|e| bad(&ca.display().to_string(), &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| bad("--sslca", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| bad("--sslcert/--sslkey", &e))?;
    Ok(Some(Arc::new(config)))
}

/// The TCP addresses of `--address` and `--port` (every interface, IPv4 and IPv6, when
/// no address is given).
pub fn tcp_addrs(args: &Args) -> io::Result<Vec<SocketAddr>> {
    let port = args.tcp_port();
    if args.address.is_empty() {
        return Ok(vec![
            SocketAddr::from(([0, 0, 0, 0], port)),
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
        ]);
    }
    let mut out = Vec::new();
    for a in &args.address {
        let host = a.trim_start_matches('[').trim_end_matches(']');
        let found: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| io::Error::new(e.kind(), format!("--address {a}: {e}")))?
            .collect();
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// Adds the listeners the command line asks for (or systemd passed) to `builder`.
pub fn bind(
    mut builder: Builder,
    args: &Args,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> io::Result<Builder> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() > 0 {
        let mut any = false;
        for i in 0..fds.len() {
            if let Ok(Some(l)) = fds.take_tcp_listener(i) {
                l.set_nonblocking(true)?;
                builder = builder.listener(l, tls.cloned());
                any = true;
            } else if let Ok(Some(l)) = fds.take_unix_listener(i) {
                l.set_nonblocking(true)?;
                builder = builder.unix_listener(l);
                any = true;
            }
        }
        if any {
            return Ok(builder);
        }
    }
    if !args.unix_only() {
        let addrs = tcp_addrs(args)?;
        let all_interfaces = args.address.is_empty();
        let mut bound = 0;
        for a in addrs {
            match tcp_listener(a) {
                Ok(l) => {
                    builder = builder.listener(l, tls.cloned());
                    bound += 1;
                }
                // No IPv6 on this machine: the IPv4 listener is enough.
                Err(e) if all_interfaces && a.is_ipv6() && bound > 0 => {
                    tracing::debug!("not listening on {a}: {e}");
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("listen on {a}: {e}"))),
            }
        }
    }
    if let Some(path) = &args.unixsocket {
        // A socket file another server still answers on is left alone (a stale one from an
        // unclean exit is replaced).
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another server is listening there", path.display()),
            ));
        }
        builder = builder
            .bind_unix(path)
            .map_err(|e| io::Error::new(e.kind(), format!("listen on {}: {e}", path.display())))?;
    }
    Ok(builder)
}

/// A TCP listener as a daemon wants it: `SO_REUSEADDR` (a restart binds at once), but not
/// `SO_REUSEPORT` (a second daemon on the same port is an error, not a silent split), and
/// IPv6 sockets IPv6-only (the IPv4 listener is separate).
pub fn tcp_listener(a: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(a), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if a.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&a.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// `--inetd`: the connection on stdin/stdout. A socket (inetd, systemd `Accept=yes`) is
/// used as one, so the daemon sees its addresses and can cork it; anything else (a pipe
/// pair, a terminal) is read from stdin and written to stdout.
pub fn inetd_stream() -> io::Result<(Stream, ConnInfo)> {
    use std::os::unix::fs::FileTypeExt;
    let fd = io::stdin().as_fd().try_clone_to_owned()?;
    let file = std::fs::File::from(fd);
    let is_socket = file.metadata()?.file_type().is_socket();
    if is_socket {
        let tcp = std::net::TcpStream::from(std::os::fd::OwnedFd::from(file.try_clone()?));
        if let (Ok(peer), Ok(local)) = (tcp.peer_addr(), tcp.local_addr()) {
            tcp.set_nonblocking(true)?;
            let tcp = tokio::net::TcpStream::from_std(tcp)?;
            let _ = tcp.set_nodelay(true);
            let info = ConnInfo::new(Addr::Tcp(peer), Addr::Tcp(local), TransportKind::Tcp);
            return Ok((Stream::from(tcp), info));
        }
        let unix = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(file));
        unix.set_nonblocking(true)?;
        let unix = tokio::net::UnixStream::from_std(unix)?;
        let info = ConnInfo::new(Addr::Unix(None), Addr::Unix(None), TransportKind::Unix);
        return Ok((Stream::from(unix), info));
    }
    let io = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
    let info = ConnInfo::new(Addr::Unknown, Addr::Unknown, TransportKind::Other);
    Ok((Stream::other(io), info))
}
