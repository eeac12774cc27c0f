//! The opening handshake over a blocking transport, within `handshake_timeout`: the bytes
//! move here, the checks are the engine's (`weft_proto::handshake`).

use super::{MaybeTlsStream, Transport, Wait, WebSocket};
use crate::accept::{respond, Accept, Decision};
use crate::error::{Error, Result};
use crate::options::Options;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Instant;
use weft_proto::handshake::{
    parse_request, parse_response, rejection_bytes, ClientRequest, Request, Response,
};
use weft_proto::{Connection, Role};

/// Sets the transport to wait until `deadline` (or forever).
fn wait_until<S: Transport>(io: &mut S, deadline: Option<Instant>) -> Result<()> {
    // The handshake has no "try once": a deadline that passed is a timeout.
    let wait = match Wait::until(deadline) {
        Wait::Never => return Err(Error::Timeout),
        wait => wait,
    };
    io.set_wait(wait)?;
    Ok(())
}

fn write_all<S: Transport>(io: &mut S, mut data: &[u8], deadline: Option<Instant>) -> Result<()> {
    while !data.is_empty() {
        wait_until(io, deadline)?;
        match io.write(data) {
            Ok(0) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    io.flush()?;
    Ok(())
}

/// Reads more of a head into `head`; 0 at end of file.
fn read_more<S: Transport>(
    io: &mut S,
    head: &mut Vec<u8>,
    deadline: Option<Instant>,
) -> Result<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        wait_until(io, deadline)?;
        match io.read(&mut chunk) {
            Ok(n) => {
                head.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Accepts a WebSocket connection on `io` with default options, any resource, no
/// subprotocol.
pub fn accept<S: Transport>(io: S) -> Result<WebSocket<S>> {
    accept_with(io, Options::default(), |_: &Request| Ok(Accept::new())).map(|(ws, _)| ws)
}

/// Accepts a WebSocket connection: reads the request (within `handshake_timeout`), lets
/// `decide` accept or reject it, and answers. A bad request gets its 4xx and an error here.
pub fn accept_with<S, F>(mut io: S, options: Options, decide: F) -> Result<(WebSocket<S>, Request)>
where
    S: Transport,
    F: FnOnce(&Request) -> Decision,
{
    let deadline = options.handshake_timeout.map(|d| Instant::now() + d);
    let mut head = Vec::with_capacity(1024);
    let (request, consumed) = loop {
        let n = read_more(&mut io, &mut head, deadline)?;
        match parse_request(&head, &options.server_limits) {
            Ok(Some(done)) => break done,
            Ok(None) if n == 0 => return Err(Error::ConnectionReset),
            Ok(None) => {}
            Err(e) => {
                let _ = write_all(&mut io, &rejection_bytes(&e), deadline);
                let _ = io.close_write();
                return Err(e.into());
            }
        }
    };
    let (response, accepted, config) = respond(&request, decide(&request), &options);
    write_all(&mut io, &response, deadline)?;
    if !accepted {
        let _ = io.close_write();
        return Err(Error::InvalidArgument("the handshake was rejected"));
    }
    let mut conn = Connection::new(Role::Server, config);
    conn.receive(&head[consumed..]);
    Ok((WebSocket::from_parts(io, conn, options), request))
}

/// Connects to a `ws://` or `wss://` URL: resolves the host, opens TCP within
/// `connect_timeout`, TLS for `wss://` (with [`Options::tls`](crate::Options)), and does
/// the handshake within `handshake_timeout`.
pub fn connect(url: &str, options: Options) -> Result<(WebSocket<MaybeTlsStream>, Response)> {
    let request = crate::client::request_for(url, &options)?;
    connect_request(&request, options)
}

/// [`connect`] with a request built by [`ClientRequest::builder`].
pub fn connect_request(
    request: &ClientRequest,
    options: Options,
) -> Result<(WebSocket<MaybeTlsStream>, Response)> {
    let tcp = open_tcp(request, &options)?;
    let stream = if request.is_tls() {
        #[cfg(feature = "tls")]
        {
            let config = options
                .tls
                .clone()
                .unwrap_or_else(crate::tls::default_client_config);
            let name = crate::tls::server_name(request.host())?;
            let conn = rustls::ClientConnection::new(config, name)
                .map_err(|e| Error::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?;
            // The TLS handshake runs inside the first writes and reads of the handshake.
            MaybeTlsStream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
        #[cfg(not(feature = "tls"))]
        {
            return Err(Error::InvalidArgument("wss:// needs the `tls` feature"));
        }
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    connect_with(request, stream, options)
}

/// Opens the TCP connection for `request` within `connect_timeout`.
pub(crate) fn open_tcp(request: &ClientRequest, options: &Options) -> Result<TcpStream> {
    let addrs = (request.host(), request.port()).to_socket_addrs()?;
    let mut last = None;
    for addr in addrs {
        let attempt = match options.connect_timeout {
            Some(t) => TcpStream::connect_timeout(&addr, t),
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(Error::from)
        .unwrap_or(Error::InvalidArgument("the host has no address")))
}

/// Opens a client connection to `url` over `io`, already connected to its host.
pub fn connect_stream<S: Transport>(url: &str, io: S) -> Result<(WebSocket<S>, Response)> {
    let request = ClientRequest::new(url)?;
    connect_with(&request, io, Options::default())
}

/// Opens a client connection with a request built by [`ClientRequest::builder`] (Origin,
/// subprotocols, extra headers) and options. The response is checked (101, Upgrade,
/// Connection, Accept, subprotocol).
pub fn connect_with<S: Transport>(
    request: &ClientRequest,
    mut io: S,
    options: Options,
) -> Result<(WebSocket<S>, Response)> {
    let deadline = options.handshake_timeout.map(|d| Instant::now() + d);
    let mut out = Vec::new();
    request.write(&mut out);
    write_all(&mut io, &out, deadline)?;
    let mut head = Vec::with_capacity(1024);
    let (response, consumed) = loop {
        let n = read_more(&mut io, &mut head, deadline)?;
        match parse_response(&head, request, options.max_response_head)? {
            Some(done) => break done,
            None if n == 0 => return Err(Error::ConnectionReset),
            None => {}
        }
    };
    let config = crate::client::config_after(&response, &options)?;
    let mut conn = Connection::new(Role::Client, config);
    conn.receive(&head[consumed..]);
    Ok((WebSocket::from_parts(io, conn, options), response))
}
