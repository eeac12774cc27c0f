//! The transport of a blocking server WebSocket (threading model (e)): the same kinds as
//! [`Stream`](super::Stream), as std sockets the blocking driver can put deadlines on.
//! A stream with no socket of its own (an HTTP/2 stream) is bridged through a Unix socket
//! pair, whose other end a task of the async side copies to and from.

use super::stream::{set_tcp_cork, AnyIo, Parts, Stream};
use crate::blocking::{Transport, Wait};
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

/// A blocking server connection's transport: TCP, TLS over TCP, or a Unix socket (also the
/// bridge for streams that have no socket of their own).
#[derive(Debug)]
pub struct BlockingStream {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
    Unix(UnixStream),
}

impl BlockingStream {
    /// Turns an async [`Stream`] into a blocking one. Must be called on a tokio runtime:
    /// a stream without a socket is bridged by a task spawned on it.
    pub(crate) fn from_async(stream: Stream) -> io::Result<Self> {
        let inner = match stream.into_inner() {
            Parts::Tcp(s) => Inner::Tcp(to_blocking(s.into_std()?)?),
            Parts::Tls(s, conn) => {
                let tcp = to_blocking(s.into_std()?)?;
                Inner::Tls(Box::new(rustls::StreamOwned::new(*conn, tcp)))
            }
            Parts::Unix(s) => {
                let s = s.into_std()?;
                s.set_nonblocking(false)?;
                Inner::Unix(s)
            }
            Parts::Other(io) => Inner::Unix(bridge(io)?),
        };
        Ok(BlockingStream { inner })
    }

    /// The TCP socket underneath (under TLS too), if there is one.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match &self.inner {
            Inner::Tcp(s) => Some(s),
            Inner::Tls(s) => Some(s.get_ref()),
            Inner::Unix(_) => None,
        }
    }

    /// The TLS session, for a TLS stream.
    pub fn tls(&self) -> Option<&rustls::ServerConnection> {
        match &self.inner {
            Inner::Tls(s) => Some(&s.conn),
            _ => None,
        }
    }

    /// Corks or uncorks the TCP socket, as [`Stream::set_cork`] does.
    pub fn set_cork(&self, cork: bool) -> io::Result<()> {
        match self.tcp() {
            Some(tcp) => set_tcp_cork(tcp, cork),
            None => Ok(()),
        }
    }
}

fn to_blocking(s: TcpStream) -> io::Result<TcpStream> {
    s.set_nonblocking(false)?;
    Ok(s)
}

/// A Unix socket pair: one end for the blocking side, the other copied to and from `io`
/// by a task on the current runtime until either side ends.
fn bridge(mut io: Box<dyn AnyIo>) -> io::Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair()?;
    theirs.set_nonblocking(true)?;
    let mut theirs = tokio::net::UnixStream::from_std(theirs)?;
    tokio::spawn(async move {
        // Either side closing ends the bridge; an error means one side is gone.
        let _ = tokio::io::copy_bidirectional(&mut io, &mut theirs).await;
    });
    Ok(ours)
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Tcp(s) => s.read(buf),
            Inner::Tls(s) => s.read(buf),
            Inner::Unix(s) => s.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Tcp(s) => s.write(buf),
            Inner::Tls(s) => s.write(buf),
            Inner::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Tcp(s) => s.write_vectored(bufs),
            Inner::Tls(s) => s.write_vectored(bufs),
            Inner::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Tcp(s) => s.flush(),
            Inner::Tls(s) => s.flush(),
            Inner::Unix(s) => s.flush(),
        }
    }
}

impl Transport for BlockingStream {
    fn set_wait(&mut self, wait: Wait) -> io::Result<()> {
        match &mut self.inner {
            Inner::Tcp(s) => s.set_wait(wait),
            Inner::Tls(s) => s.set_wait(wait),
            Inner::Unix(s) => s.set_wait(wait),
        }
    }

    fn close_write(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Tcp(s) => s.close_write(),
            Inner::Tls(s) => s.close_write(),
            Inner::Unix(s) => s.close_write(),
        }
    }
}
