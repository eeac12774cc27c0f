//! The opening handshake over an async transport: the bytes move here, the checks are the
//! engine's (`weft_proto::handshake`).

use super::{with_timeout, WebSocket};
use crate::accept::{respond, Accept, Decision};
use crate::error::{Error, Result};
use crate::options::Options;
use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use weft_proto::handshake::{
    parse_request, parse_response, rejection_bytes, ClientRequest, Request, Response,
};
use weft_proto::{Connection, Role};

/// Accepts a WebSocket connection on `io` with default options, accepting any resource and
/// no subprotocol.
pub async fn accept<S>(io: S) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(io, Options::default(), |_: &Request| Ok(Accept::new()))
        .await
        .map(|(ws, _)| ws)
}

/// Accepts a WebSocket connection: reads the request (within `handshake_timeout`), lets
/// `decide` look at it (resource, Host, Origin, headers, offered subprotocols) and accept
/// or reject it, and answers. A bad request gets its 4xx with the reason and an error
/// here. Returns the connection and the request.
pub async fn accept_with<S, F>(
    io: S,
    options: Options,
    decide: F,
) -> Result<(WebSocket<S>, Request)>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Decision,
{
    // The handshake's state (buffers, the parsed request, the response) is large and lives
    // only until it completes: boxed, it is freed then, instead of staying part of the
    // future of whatever task serves the connection for its whole life.
    Box::pin(accept_inner(io, options, decide)).await
}

async fn accept_inner<S, F>(
    mut io: S,
    options: Options,
    decide: F,
) -> Result<(WebSocket<S>, Request)>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Decision,
{
    let limits = options.server_limits;
    let (request, rest) = with_timeout(options.handshake_timeout, async {
        let mut head = Vec::with_capacity(1024);
        loop {
            let n = io.read_buf(&mut head).await?;
            match parse_request(&head, &limits) {
                Ok(Some((request, consumed))) => {
                    let rest = head.split_off(consumed);
                    return Ok((request, rest));
                }
                Ok(None) if n == 0 => return Err(Error::ConnectionReset),
                Ok(None) => continue,
                Err(e) => {
                    let _ = io.write_all(&rejection_bytes(&e)).await;
                    let _ = io.shutdown().await;
                    return Err(e.into());
                }
            }
        }
    })
    .await?;
    let (response, accepted, config) = respond(&request, decide(&request), &options);
    io.write_all(&response).await?;
    io.flush().await?;
    if !accepted {
        let _ = io.shutdown().await;
        return Err(Error::InvalidArgument("the handshake was rejected"));
    }
    let mut conn = Connection::new(Role::Server, config);
    conn.receive(&rest);
    Ok((WebSocket::from_parts(io, conn, options), request))
}

/// Opens a WebSocket client connection to `url` (`ws://` or `wss://`) over `io`, which is
/// already connected to its host (and wrapped in TLS for `wss://`).
pub async fn connect<S>(url: &str, io: S) -> Result<(WebSocket<S>, Response)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = ClientRequest::new(url)?;
    connect_with(&request, io, Options::default()).await
}

/// Opens a WebSocket client connection with a request built by
/// [`ClientRequest::builder`] (Origin, subprotocols, extra headers) and options. The
/// response is checked (101, Upgrade, Connection, Accept, subprotocol).
pub async fn connect_with<S>(
    request: &ClientRequest,
    mut io: S,
    options: Options,
) -> Result<(WebSocket<S>, Response)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max_head = options.max_response_head;
    let (response, rest) = with_timeout(options.handshake_timeout, async {
        let mut out = Vec::new();
        request.write(&mut out);
        io.write_all(&out).await?;
        io.flush().await?;
        let mut head = Vec::with_capacity(1024);
        loop {
            let n = io.read_buf(&mut head).await?;
            match parse_response(&head, request, max_head)? {
                Some((response, consumed)) => return Ok((response, head.split_off(consumed))),
                None if n == 0 => return Err(Error::ConnectionReset),
                None => continue,
            }
        }
    })
    .await?;
    let config = crate::client::config_after(&response, &options)?;
    let mut conn = Connection::new(Role::Client, config);
    conn.receive(&rest);
    Ok((WebSocket::from_parts(io, conn, options), response))
}
