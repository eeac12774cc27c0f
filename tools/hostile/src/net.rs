//! The raw side of the attacks: sockets (plain or TLS), request heads written by hand,
//! response heads read by hand, client frames built byte by byte and server frames parsed.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A connection to the target: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
pub type Io = Box<dyn Stream>;

/// The server under attack.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// `ws://127.0.0.1:PORT/PATH` or `wss://...`; only loopback hosts.
    pub fn parse(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Target, String> {
        let (secure, rest) = if let Some(r) = url.strip_prefix("ws://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("wss://") {
            (true, r)
        } else {
            return Err(format!("{url}: not a ws:// or wss:// URL"));
        };
        if secure != tls.is_some() {
            return Err("wss:// goes with --tls CA-FILE, ws:// without it".into());
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("{url}: no port"))?;
        let port: u16 = port.parse().map_err(|e| format!("{url}: port: {e}"))?;
        if host != "127.0.0.1" && host != "localhost" {
            return Err(format!("{url}: only 127.0.0.1 is attacked"));
        }
        Ok(Target {
            url: url.to_string(),
            host: host.to_string(),
            port,
            path: path.to_string(),
            tls,
        })
    }

    /// Opens a connection (TCP, then TLS for wss://) within 5 s. With `rst`, SO_LINGER is
    /// 0: closing it sends a reset, not a FIN.
    pub async fn open(&self, rst: bool) -> io::Result<Io> {
        let tcp = self.open_tcp(rst).await?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(config) => {
                let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                let tls =
                    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
                        .await
                        .map_err(|_| {
                            io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                        })??;
                Ok(Box::new(tls))
            }
        }
    }

    /// Only the TCP connection (no TLS even for wss://).
    pub async fn open_tcp(&self, rst: bool) -> io::Result<TcpStream> {
        let tcp = tokio::time::timeout(
            Duration::from_secs(5),
            TcpStream::connect(("127.0.0.1", self.port)),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        if rst {
            socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO))?;
        }
        Ok(tcp)
    }

    /// A valid upgrade request, changed: `method`, `version`, headers named in `drop`
    /// left out, `extra` lines added (each "Name: value"), `pad` appended before the end.
    pub fn request(&self, method: &str, version: &str, drop: &[&str], extra: &[&str]) -> String {
        let mut head = format!("{method} {} {version}\r\n", self.path);
        let standard = [
            ("Host", format!("{}:{}", self.host, self.port)),
            ("Upgrade", "websocket".to_string()),
            ("Connection", "Upgrade".to_string()),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==".to_string()),
            ("Sec-WebSocket-Version", "13".to_string()),
        ];
        for (name, value) in standard {
            if !drop.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        for line in extra {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head
    }

    pub fn upgrade_request(&self) -> String {
        self.request("GET", "HTTP/1.1", &[], &[])
    }

    /// Opens a connection and completes the opening handshake: the stream and whatever
    /// arrived after the 101's head.
    pub async fn upgrade(&self, rst: bool) -> Result<(Io, Vec<u8>), String> {
        let mut io = self.open(rst).await.map_err(|e| format!("connect: {e}"))?;
        send_all(&mut io, self.upgrade_request().as_bytes())
            .await
            .map_err(|e| format!("writing the request: {e}"))?;
        let mut buf = Vec::new();
        let head = read_head(&mut io, &mut buf, Duration::from_secs(5)).await?;
        if head.status != 101 {
            return Err(format!("handshake answered {}", head.status));
        }
        Ok((io, buf))
    }
}

/// A response head.
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a response head (at most 64 KiB, within `limit`); `buf` keeps what followed it.
/// Writes all of `bytes` and flushes: over TLS a write may leave records in the TLS
/// stream (its socket was full) that only a flush, or the next write, sends; a client that
/// writes and then only reads would wait for the server's answer to bytes it never sent.
pub async fn send_all<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

pub async fn read_head<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> Result<Head, String> {
    let deadline = Instant::now() + limit;
    loop {
        {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = Head {
                        status: resp.code.unwrap_or(0),
                        headers: resp
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                    };
                    buf.drain(..n);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(format!("unparsable response head: {e}")),
            }
        }
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout_at(deadline.into(), r.read(&mut chunk)).await {
            Err(_) => return Err("no response head in time".into()),
            Ok(Err(e)) => return Err(format!("{} before a response", describe(&e))),
            Ok(Ok(0)) => return Err("closed without a response".into()),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How a connection ended, seen by reading (data is read and dropped, at most 16 MiB).
pub async fn ending<R: AsyncRead + Unpin + ?Sized>(r: &mut R, limit: Duration) -> &'static str {
    let deadline = Instant::now() + limit;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        match tokio::time::timeout_at(deadline.into(), r.read(&mut chunk)).await {
            Err(_) => return "still open",
            Ok(Ok(0)) => return "closed",
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => return "reset",
            // TLS: the TCP connection ended without a close_notify alert.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return "closed (TLS: no close_notify)"
            }
            Ok(Err(_)) => return "closed with an error",
            Ok(Ok(n)) => {
                total += n;
                if total > 16 << 20 {
                    return "still sending";
                }
            }
        }
    }
}

pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "reset".into(),
        io::ErrorKind::BrokenPipe => "broken pipe".into(),
        io::ErrorKind::UnexpectedEof => "closed".into(),
        _ => e.to_string(),
    }
}

pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Appends a masked client frame.
pub fn frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8]) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

pub fn close_frame(out: &mut Vec<u8>, code: u16) {
    frame(out, true, 0x8, &code.to_be_bytes());
}

/// What the server sent, frame by frame (messages assembled, only their length kept past
/// 1 KiB).
#[derive(Debug)]
pub enum Ev {
    Msg {
        text: bool,
        len: usize,
        head: Vec<u8>,
    },
    Ping,
    Pong(Vec<u8>),
    Close(Option<u16>),
    /// The end of the stream: "closed", "reset", or what went wrong.
    End(String),
}

/// Reads and parses the server's frames on a task of its own until the stream ends.
pub fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(
    mut r: R,
    leftover: Vec<u8>,
) -> mpsc::UnboundedReceiver<Ev> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = leftover;
        let mut msg: Option<(bool, usize, Vec<u8>)> = None;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            // Parse every whole frame in the buffer.
            while let Some((fin, opcode, start, len)) = parse_header(&buf) {
                if len > (256 << 20) {
                    let _ = tx.send(Ev::End(format!("the server sent a frame of {len} bytes")));
                    return;
                }
                if buf.len() < start + len {
                    break;
                }
                let payload = &buf[start..start + len];
                let ev = match opcode {
                    0x8 => Some(Ev::Close(
                        (len >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
                    )),
                    0x9 => Some(Ev::Ping),
                    0xA => Some(Ev::Pong(payload.to_vec())),
                    0x0..=0x2 => {
                        let m = match (opcode, msg.take()) {
                            (0x0, Some(m)) => Some(m),
                            (0x0, None) => {
                                let _ = tx.send(Ev::End("a continuation without a message".into()));
                                return;
                            }
                            (_, _) => Some((opcode == 0x1, 0, Vec::new())),
                        };
                        let (text, mut total, mut head) = m.unwrap_or_default();
                        total += len;
                        let room = 1024usize.saturating_sub(head.len()).min(len);
                        head.extend_from_slice(&payload[..room]);
                        if fin {
                            Some(Ev::Msg {
                                text,
                                len: total,
                                head,
                            })
                        } else {
                            msg = Some((text, total, head));
                            None
                        }
                    }
                    other => Some(Ev::End(format!("the server sent opcode {other}"))),
                };
                buf.drain(..start + len);
                if let Some(ev) = ev {
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
            }
            // Ends with the stream, or when the case stops listening (its connection is
            // then closed once the writing half is dropped too).
            let read = tokio::select! {
                read = r.read(&mut chunk) => read,
                _ = tx.closed() => return,
            };
            match read {
                Ok(0) => {
                    let _ = tx.send(Ev::End("closed".into()));
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    let _ = tx.send(Ev::End(describe(&e)));
                    return;
                }
            }
        }
    });
    rx
}

/// A server frame's header: (fin, opcode, payload offset, payload length).
fn parse_header(buf: &[u8]) -> Option<(bool, u8, usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if masked {
        at += 4; // a server must not mask; the length is still right
    }
    if buf.len() < at {
        return None;
    }
    Some((fin, opcode, at, usize::try_from(len).unwrap_or(usize::MAX)))
}

/// The next event before `deadline`; `None` on timeout or when the reader is gone.
pub async fn next_ev(rx: &mut mpsc::UnboundedReceiver<Ev>, deadline: Instant) -> Option<Ev> {
    tokio::time::timeout_at(deadline.into(), rx.recv())
        .await
        .ok()
        .flatten()
}

/// Waits for the server's close frame (data and pings skipped): its code and how the
/// stream ended after it (or what happened instead).
pub async fn await_close(
    rx: &mut mpsc::UnboundedReceiver<Ev>,
    limit: Duration,
) -> Result<(Option<u16>, String), String> {
    let deadline = Instant::now() + limit;
    let mut code = None;
    loop {
        match next_ev(rx, deadline).await {
            None if code.is_some() => return Ok((code.flatten(), "still open".into())),
            None => return Err("no close frame in time".into()),
            Some(Ev::Close(c)) => code = Some(c),
            Some(Ev::End(how)) => {
                return match code {
                    Some(c) => Ok((c, how)),
                    None => Err(format!("{how} without a close frame")),
                }
            }
            Some(_) => {}
        }
    }
}

/// A small deterministic generator (xorshift64*), for "random" bytes that are the same on
/// every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls() {
        assert!(Target::parse("ws://127.0.0.1:9001/x", None).is_ok());
        assert!(Target::parse("ws://10.0.0.1:9001/x", None).is_err());
        assert!(Target::parse("ws://example.com:80/", None).is_err());
        assert!(Target::parse("http://127.0.0.1:80/", None).is_err());
        assert!(
            Target::parse("wss://127.0.0.1:443/", None).is_err(),
            "wss needs a CA"
        );
        let t = Target::parse("ws://127.0.0.1:9001", None).unwrap();
        assert_eq!((t.port, t.path.as_str()), (9001, "/"));
    }

    #[test]
    fn frames_at_each_length_form() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload = vec![b'q'; len];
            let mut out = Vec::new();
            frame(&mut out, true, 0x2, &payload);
            let (fin, opcode, start, got) = parse_header(&out).unwrap();
            assert!(fin);
            assert_eq!((opcode, got), (0x2, len));
            // Masked: the header is followed by the key, then the masked payload.
            assert_eq!(start + len, out.len());
            let unmasked: Vec<u8> = out[start..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            assert_eq!(unmasked, payload);
        }
    }

    #[test]
    fn partial_headers_wait() {
        assert_eq!(parse_header(&[0x82]), None);
        assert_eq!(parse_header(&[0x82, 126, 0]), None);
        assert_eq!(parse_header(&[0x82, 127, 0, 0, 0, 0]), None);
        assert_eq!(parse_header(&[0x88, 2, 3, 0xe8]), Some((true, 8, 2, 2)));
    }

    #[tokio::test]
    async fn reader_assembles_and_reports_close() {
        // A server's frames (unmasked): text in two fragments, a pong, a close 1009.
        let mut bytes = vec![0x01, 3, b'a', b'b', b'c', 0x80, 2, b'd', b'e'];
        bytes.extend_from_slice(&[0x8a, 1, 7, 0x88, 2, 0x03, 0xf1]);
        let mut rx = spawn_reader(std::io::Cursor::new(bytes), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(5);
        match next_ev(&mut rx, deadline).await {
            Some(Ev::Msg { text, len, head }) => {
                assert!(text);
                assert_eq!((len, head.as_slice()), (5, &b"abcde"[..]));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(next_ev(&mut rx, deadline).await, Some(Ev::Pong(p)) if p == [7]));
        assert_eq!(
            await_close(&mut rx, Duration::from_secs(5)).await,
            Ok((Some(1009), "closed".to_string()))
        );
    }
}
