//! A TCP stream that is plain for `ws://` and TLS for `wss://`, and `connect_url`, which
//! opens either.

use super::{with_timeout, WebSocket};
use crate::error::Result;
use crate::options::Options;
use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::net::TcpStream;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use weft_proto::handshake::{ClientRequest, Response};

/// A transport that is plain or TLS (rustls), as a `ws://` or `wss://` URL asks.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream<S> {
    /// Plain bytes.
    Plain(S),
    /// TLS, client side.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            MaybeTlsStream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            MaybeTlsStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// Connects to a `ws://` or `wss://` URL: resolves and opens TCP within
/// `connect_timeout`, TLS for `wss://` (with [`Options::tls`]), then the handshake within
/// `handshake_timeout`.
///
/// ```no_run
/// # async fn run() -> weft::Result<()> {
/// let (mut ws, _) = weft::tokio::connect_url("wss://example.com/socket", weft::Options::default()).await?;
/// ws.send("hi").await?;
/// # Ok(()) }
/// ```
pub async fn connect_url(
    url: &str,
    options: Options,
) -> Result<(WebSocket<MaybeTlsStream<TcpStream>>, Response)> {
    let request = crate::client::request_for(url, &options)?;
    connect_request(&request, options).await
}

/// [`connect_url`] with a request built by [`ClientRequest::builder`] (Origin,
/// subprotocols, extra headers).
pub async fn connect_request(
    request: &ClientRequest,
    options: Options,
) -> Result<(WebSocket<MaybeTlsStream<TcpStream>>, Response)> {
    let tcp = with_timeout(options.connect_timeout, async {
        Ok(TcpStream::connect((request.host(), request.port())).await?)
    })
    .await?;
    tcp.set_nodelay(true)?;
    let stream = if request.is_tls() {
        #[cfg(feature = "tls")]
        {
            let config = options
                .tls
                .clone()
                .unwrap_or_else(crate::tls::default_client_config);
            let name = crate::tls::server_name(request.host())?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls = with_timeout(options.handshake_timeout, async {
                Ok(connector.connect(name, tcp).await?)
            })
            .await?;
            MaybeTlsStream::Tls(Box::new(tls))
        }
        #[cfg(not(feature = "tls"))]
        {
            return Err(crate::Error::InvalidArgument(
                "wss:// needs the `tls` feature",
            ));
        }
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    super::connect_with(request, stream, options).await
}
