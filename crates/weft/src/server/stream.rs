//! The transports a server connection runs on, as one type: TCP, TLS over TCP, a Unix
//! socket, or any other stream (an HTTP/2 stream, stdin/stdout). A handler sees the same
//! [`Stream`] on each, so one handler serves them all; after an HTTP/1.1 upgrade the
//! WebSocket runs on the transport itself (a `match` per read and write, no boxing).
//!
//! Corking lives here too: [`Stream::set_cork`] holds small writes in the kernel
//! (`TCP_CORK`) until it is cleared, without handing out the socket.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::server::TlsStream;

/// A byte stream of any kind, boxed: what [`Stream::other`] wraps.
pub trait AnyIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AnyIo for T {}

/// A server connection's transport: TCP, TLS, a Unix socket, or another stream.
pub struct Stream {
    inner: Inner,
}

enum Inner {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
    Other(Box<dyn AnyIo>),
    #[cfg(all(feature = "uring", target_os = "linux"))]
    Uring(crate::uring::UringStream),
}

/// Which kind of transport a [`Stream`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// A Unix domain socket.
    Unix,
    /// Anything else: an HTTP/2 stream, stdin/stdout, a pipe.
    Other,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("kind", &self.kind())
            .finish()
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream {
            inner: Inner::Tcp(s),
        }
    }
}

impl From<TlsStream<TcpStream>> for Stream {
    fn from(s: TlsStream<TcpStream>) -> Self {
        Stream {
            inner: Inner::Tls(Box::new(s)),
        }
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Self {
        Stream {
            inner: Inner::Unix(s),
        }
    }
}

#[cfg(all(feature = "uring", target_os = "linux"))]
impl From<crate::uring::UringStream> for Stream {
    fn from(s: crate::uring::UringStream) -> Self {
        Stream {
            inner: Inner::Uring(s),
        }
    }
}

impl Stream {
    /// Wraps any other byte stream (stdin/stdout joined, a pipe, an in-memory duplex).
    pub fn other(io: impl AnyIo) -> Self {
        Stream {
            inner: Inner::Other(Box::new(io)),
        }
    }

    /// The io_uring stream, if this is one.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn uring_mut(&mut self) -> Option<&mut crate::uring::UringStream> {
        match &mut self.inner {
            Inner::Uring(s) => Some(s),
            _ => None,
        }
    }

    /// Which kind of transport this is.
    pub fn kind(&self) -> TransportKind {
        match &self.inner {
            Inner::Tcp(_) => TransportKind::Tcp,
            Inner::Tls(_) => TransportKind::Tls,
            Inner::Unix(_) => TransportKind::Unix,
            Inner::Other(_) => TransportKind::Other,
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Inner::Uring(_) => TransportKind::Tcp,
        }
    }

    /// The TCP socket's descriptor (plain, under TLS, or on an io_uring ring), if there is
    /// one: for socket options and for watching the socket.
    pub fn tcp_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match &self.inner {
            Inner::Tcp(s) => Some(s.as_fd()),
            Inner::Tls(s) => Some(s.get_ref().0.as_fd()),
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Inner::Uring(s) => Some(s.as_fd()),
            _ => None,
        }
    }

    /// Whether this connection's reads and writes go through an io_uring ring
    /// ([`Model::Uring`](super::Model::Uring)) rather than the runtime's epoll.
    pub fn is_uring(&self) -> bool {
        #[cfg(all(feature = "uring", target_os = "linux"))]
        if let Inner::Uring(_) = self.inner {
            return true;
        }
        false
    }

    /// The tokio TCP socket underneath (under TLS too), if there is one (not on an
    /// io_uring ring: see [`tcp_fd`](Self::tcp_fd)).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match &self.inner {
            Inner::Tcp(s) => Some(s),
            Inner::Tls(s) => Some(s.get_ref().0),
            _ => None,
        }
    }

    /// The TLS session, for a TLS stream (SNI, ALPN, client certificates).
    pub fn tls(&self) -> Option<&rustls::ServerConnection> {
        match &self.inner {
            Inner::Tls(s) => Some(s.get_ref().1),
            _ => None,
        }
    }

    /// Corks (`true`) or uncorks (`false`) the transport. While corked, the kernel holds
    /// partial TCP segments, so many small writes leave as full segments; uncorking sends
    /// what is held at once and turns `TCP_NODELAY` back on. Over TLS this applies to the
    /// TCP socket underneath. Where there is no TCP socket (a Unix socket, an HTTP/2
    /// stream) it does nothing and returns `Ok`: writes there are not delayed by Nagle.
    pub fn set_cork(&self, cork: bool) -> io::Result<()> {
        let Some(tcp) = self.tcp_fd() else {
            return Ok(());
        };
        set_tcp_cork(tcp, cork)
    }

    /// Takes the plain pieces back out: for a blocking connection.
    pub(crate) fn into_inner(self) -> Parts {
        match self.inner {
            Inner::Tcp(s) => Parts::Tcp(s),
            Inner::Tls(s) => {
                let (tcp, conn) = (*s).into_inner();
                Parts::Tls(tcp, Box::new(conn))
            }
            Inner::Unix(s) => Parts::Unix(s),
            Inner::Other(s) => Parts::Other(s),
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Inner::Uring(s) => Parts::Other(Box::new(s)),
        }
    }
}

/// The pieces of a [`Stream`].
pub(crate) enum Parts {
    Tcp(TcpStream),
    Tls(TcpStream, Box<rustls::ServerConnection>),
    Unix(UnixStream),
    Other(Box<dyn AnyIo>),
}

/// `TCP_CORK` on Linux; elsewhere the nearest thing, Nagle's algorithm.
pub(crate) fn set_tcp_cork(tcp: impl std::os::fd::AsFd, cork: bool) -> io::Result<()> {
    let socket = socket2::SockRef::from(&tcp);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        socket.set_tcp_cork(cork)?;
    }
    socket.set_tcp_nodelay(!cork)
}

/// Each I/O call is a `match` on the transport, inlined into the caller (it is on every
/// read and write of every connection).
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().inner {
            Inner::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Inner::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
            Inner::Unix($s) => {
                let $s = Pin::new($s);
                $e
            }
            Inner::Other($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Inner::Uring($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Tcp(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
            Inner::Unix(s) => s.is_write_vectored(),
            Inner::Other(s) => s.is_write_vectored(),
            #[cfg(all(feature = "uring", target_os = "linux"))]
            Inner::Uring(s) => s.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

impl crate::tokio::WebSocket<Stream> {
    /// Corks the connection: what is sent from now on is held (in the kernel, with
    /// `TCP_CORK`, plain or TLS) until [`uncork`](Self::uncork), which sends it together.
    /// Use `feed` instead of `send` to hold messages in the engine's queue too.
    pub fn cork(&mut self) -> crate::Result<()> {
        self.get_ref().set_cork(true)?;
        Ok(())
    }

    /// Writes everything queued and uncorks: what was held leaves now.
    pub async fn uncork(&mut self) -> crate::Result<()> {
        self.flush().await?;
        self.get_ref().set_cork(false)?;
        Ok(())
    }
}
