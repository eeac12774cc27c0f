//! Where a server accepts connections: TCP (plain or TLS) and Unix sockets. TCP listeners
//! are bound with `SO_REUSEPORT`, so the thread-per-core model can bind one more socket per
//! thread to the same address and let the kernel spread connections across them.

use super::info::Addr;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A bound listener, before a runtime adopts it.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) socket: BoundSocket,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

#[derive(Debug)]
pub(crate) enum BoundSocket {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, Option<PathBuf>),
}

/// Binds a TCP listener with `SO_REUSEADDR` and `SO_REUSEPORT` and a backlog of 1024.
pub(crate) fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Binds a Unix socket listener at `path`, removing a stale socket file first.
pub(crate) fn bind_unix(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl Bound {
    pub(crate) fn local_addr(&self) -> Addr {
        match &self.socket {
            BoundSocket::Tcp(l) => l.local_addr().map(Addr::Tcp).unwrap_or(Addr::Unknown),
            BoundSocket::Unix(_, p) => Addr::Unix(p.clone()),
        }
    }

    /// Another listener for the same address, for another thread: a new `SO_REUSEPORT`
    /// socket for TCP (the kernel balances between them), a shared one for Unix sockets and
    /// for a TCP listener that was bound without `SO_REUSEPORT` (one handed to
    /// [`Builder::listener`](super::Builder::listener), or by systemd): the threads then
    /// take turns accepting on it.
    pub(crate) fn sibling(&self) -> io::Result<Bound> {
        let socket = match &self.socket {
            BoundSocket::Tcp(l) => {
                BoundSocket::Tcp(bind_tcp(l.local_addr()?).or_else(|_| l.try_clone())?)
            }
            BoundSocket::Unix(l, p) => BoundSocket::Unix(l.try_clone()?, p.clone()),
        };
        Ok(Bound {
            socket,
            tls: self.tls.clone(),
        })
    }

    /// The listener on the current tokio runtime.
    pub(crate) fn into_tokio(self) -> io::Result<Listener> {
        let tls = self.tls.map(tokio_rustls::TlsAcceptor::from);
        Ok(match self.socket {
            BoundSocket::Tcp(l) => {
                l.set_nonblocking(true)?;
                Listener::Tcp(tokio::net::TcpListener::from_std(l)?, tls)
            }
            BoundSocket::Unix(l, p) => {
                l.set_nonblocking(true)?;
                Listener::Unix(tokio::net::UnixListener::from_std(l)?, p)
            }
        })
    }
}

/// A listener on a runtime.
pub(crate) enum Listener {
    Tcp(tokio::net::TcpListener, Option<tokio_rustls::TlsAcceptor>),
    Unix(tokio::net::UnixListener, Option<PathBuf>),
}

/// A connection just accepted: not yet TLS, not yet HTTP.
pub(crate) enum Accepted {
    Tcp(tokio::net::TcpStream, Option<tokio_rustls::TlsAcceptor>),
    Unix(tokio::net::UnixStream),
    /// A plain TCP connection moved onto the thread's io_uring ring ([`super::Model::Uring`]).
    #[cfg(all(feature = "uring", target_os = "linux"))]
    Uring(crate::uring::UringStream),
}

impl Listener {
    pub(crate) async fn accept(&self) -> io::Result<(Accepted, Addr, Addr)> {
        match self {
            Listener::Tcp(l, tls) => {
                let (s, peer) = l.accept().await?;
                let local = s.local_addr().map(Addr::Tcp).unwrap_or(Addr::Unknown);
                // Small messages leave at once; corking (`Stream::set_cork`) batches them.
                s.set_nodelay(true)?;
                Ok((Accepted::Tcp(s, tls.clone()), Addr::Tcp(peer), local))
            }
            Listener::Unix(l, path) => {
                let (s, peer) = l.accept().await?;
                let peer = Addr::Unix(peer.as_pathname().map(Path::to_path_buf));
                Ok((Accepted::Unix(s), peer, Addr::Unix(path.clone())))
            }
        }
    }
}

impl Accepted {
    /// The accepted socket moved off this runtime (for a connection thread of its own).
    pub(crate) fn into_std(self) -> io::Result<StdAccepted> {
        Ok(match self {
            Accepted::Tcp(s, tls) => StdAccepted::Tcp(s.into_std()?, tls),
            Accepted::Unix(s) => StdAccepted::Unix(s.into_std()?),
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Accepted::Uring(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "an io_uring connection stays on its thread",
                ))
            }
        })
    }
}

/// An accepted socket between two runtimes.
pub(crate) enum StdAccepted {
    Tcp(std::net::TcpStream, Option<tokio_rustls::TlsAcceptor>),
    Unix(std::os::unix::net::UnixStream),
}

impl StdAccepted {
    /// Back onto the current runtime.
    pub(crate) fn into_tokio(self) -> io::Result<Accepted> {
        Ok(match self {
            StdAccepted::Tcp(s, tls) => Accepted::Tcp(tokio::net::TcpStream::from_std(s)?, tls),
            StdAccepted::Unix(s) => Accepted::Unix(tokio::net::UnixStream::from_std(s)?),
        })
    }
}
