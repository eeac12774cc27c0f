//! A blocking TCP stream that is plain for `ws://` and TLS for `wss://`, and the TLS
//! streams as deadline-capable transports.

use super::{Transport, Wait};
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;

/// A transport that is plain or TLS (rustls), as a `ws://` or `wss://` URL asks.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, client side.
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for MaybeTlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MaybeTlsStream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for MaybeTlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeTlsStream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            MaybeTlsStream::Plain(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeTlsStream::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.flush(),
        }
    }
}

impl Transport for MaybeTlsStream {
    fn set_wait(&mut self, wait: Wait) -> io::Result<()> {
        match self {
            MaybeTlsStream::Plain(s) => s.set_wait(wait),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.set_wait(wait),
        }
    }

    fn close_write(&mut self) -> io::Result<()> {
        match self {
            MaybeTlsStream::Plain(s) => s.close_write(),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.close_write(),
        }
    }
}

/// TLS over any deadline-capable transport (client or server side): the deadlines go to
/// the socket underneath.
#[cfg(feature = "tls")]
impl<C, T, D> Transport for rustls::StreamOwned<C, T>
where
    C: std::ops::DerefMut + std::ops::Deref<Target = rustls::ConnectionCommon<D>>,
    T: Transport,
    D: rustls::SideData,
{
    fn set_wait(&mut self, wait: Wait) -> io::Result<()> {
        self.sock.set_wait(wait)
    }

    fn close_write(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        // Write the close_notify alert; then end the socket's sending direction.
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.sock)? == 0 {
                break;
            }
        }
        self.sock.close_write()
    }
}
