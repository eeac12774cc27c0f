//! One connection's pump between a WebSocket and its program: a single task, no channels,
//! no thread per direction.
//!
//! Four flows move independently, each bounded, so that neither side can make the other
//! wait forever or make the daemon buffer without end:
//! - messages from the client are encoded for the program while at most [`HIGH_WATER`]
//!   bytes wait for its stdin (past that the socket is not read: TCP pushes back);
//! - those bytes are written to stdin as the program reads them;
//! - the program's stdout is read while at most [`HIGH_WATER`] bytes wait to go out on
//!   the socket (past that the pipe is not read: the program blocks on its write);
//! - the socket is written as the client reads.
//!
//! websocketd reads and writes with a goroutine per direction and an unbounded pipe
//! between them, and deadlocks when a program's stdout and stdin fill at once; here a full
//! direction never stops another.
//!
//! The connection ends one of two ways: the client goes (close, error, or the server's
//! shutdown), and the program is stopped; or the program's output ends and it exits, and
//! the client gets a Close frame: 1000 on exit status 0, 1011 otherwise, the status in the
//! reason.

use crate::cli::Output;
use crate::framing::{self, Mode};
use crate::process::{self, Program};
use bytes::{Buf, BytesMut};
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::process::ExitStatus;
use std::task::{Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use weft::proto::{CloseCode, Message};
use weft::server::WebSocket;

/// The most bytes waiting in either direction before that direction's source is no
/// longer read.
pub const HIGH_WATER: usize = 64 * 1024;
/// How much one read from the program may take.
const READ_CHUNK: usize = 16 * 1024;
/// The longest stderr line logged whole.
const STDERR_LINE: usize = 16 * 1024;

/// How the pump maps bytes and messages.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Text, binary or framed.
    pub mode: Mode,
    /// Plain, or stdout and stderr tagged as JSON (`--passstderr`).
    pub output: Output,
    /// The longest message sent to the client (longer lines go in pieces).
    pub out_limit: usize,
}

/// How a connection ended.
#[derive(Debug)]
pub enum End {
    /// The client closed, failed or was shut down.
    ClientGone(Option<weft::Error>),
    /// The program ended its output and exited; the client was sent this close.
    ProgramExited(ExitStatus),
    /// The program wrote what framed mode cannot carry.
    BadOutput(framing::FramingError),
}

/// What the bridge tells its caller: the program's stderr lines (those not sent to the
/// client) and how the connection ended.
pub trait Report: Send {
    /// A line the program wrote to stderr.
    fn stderr_line(&mut self, line: &str);
    /// The connection is over and the program's group is gone.
    fn ended(&mut self, end: &End);
}

/// A watch on the client's socket for its end: see [`Pump::client_hung_up`]. A duplicate
/// of the socket's descriptor, registered with the runtime for readiness only (it is never
/// read or written, and its flags, shared with the socket, are left as they are).
type Hangup = AsyncFd<OwnedFd>;

/// Registers `fd` (a duplicate of the client's socket) for readiness to read: its end
/// (`EPOLLRDHUP`), a reset or an error. Nothing is read from it, and its flags are left
/// alone: under io_uring the socket stays in blocking mode.
// `AsyncFd::with_interest` is deprecated (tokio#8587) because an arbitrary `AsRawFd` may
// hand back another descriptor, or one closed, while registered; an `OwnedFd` owns its
// descriptor for the `AsyncFd`'s whole life and is never swapped (no `get_mut` here), which
// is what the `unsafe` replacement asks, and this crate is `forbid(unsafe_code)`.
#[allow(deprecated)]
fn watch(fd: OwnedFd) -> std::io::Result<Hangup> {
    AsyncFd::with_interest(fd, Interest::READABLE)
}

/// The pump's state, borrowing the connection's WebSocket and program.
struct Pump<'a> {
    ws: &'a mut WebSocket,
    program: &'a mut Program,
    settings: Settings,
    to_program: BytesMut,
    out_buf: BytesMut,
    err_buf: BytesMut,
    scratch: Vec<Message>,
    report: &'a mut dyn Report,
    /// While the client's input is pushed back: a watch on its socket for its end.
    hangup: Option<Box<Hangup>>,
}

/// Runs the connection until it ends, then ends the program (its whole group), waits
/// until it is reaped and reports the end.
///
/// While the connection is idle this future is all it holds besides the socket's and the
/// pipes' registrations (no task of its own for the program, no buffer), so what lives
/// across its awaits is kept small (`connection_future_stays_small` checks its size): an
/// `async move` block rather than an `async fn`, whose arguments would be moved into
/// locals of their own next to the slots they came in (a second WebSocket's room).
// Not an `async fn`: it would keep its arguments twice.
#[allow(clippy::manual_async_fn)]
pub fn run(
    mut ws: WebSocket,
    mut program: Program,
    settings: Settings,
    mut report: impl Report + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let mut pump = Pump {
            ws: &mut ws,
            program: &mut program,
            settings,
            to_program: BytesMut::new(),
            out_buf: BytesMut::new(),
            err_buf: BytesMut::new(),
            scratch: Vec::new(),
            report: &mut report,
            hangup: None,
        };
        let end = std::future::poll_fn(|cx| pump.poll(cx)).await;
        drop(pump);
        // Whatever way it ended, the pipes close now: a program still writing gets EPIPE.
        program.stdout = None;
        program.stderr = None;
        program.stop();
        match &end {
            End::ProgramExited(status) => {
                let (code, reason) = close_for(*status);
                let _ = ws.close(code, &reason).await;
            }
            End::BadOutput(e) => {
                let reason = truncate_reason(format!("bad output: {e}"));
                let _ = ws.close(CloseCode::INTERNAL_ERROR, &reason).await;
            }
            End::ClientGone(_) => {}
        }
        drop(ws);
        program.finished().await;
        report.ended(&end);
    }
}

/// The close code and reason for a program's exit.
pub fn close_for(status: ExitStatus) -> (CloseCode, String) {
    let code = if status.success() {
        CloseCode::NORMAL
    } else {
        CloseCode::INTERNAL_ERROR
    };
    (code, process::describe(status))
}

/// A close reason must fit a control frame (123 bytes of UTF-8).
fn truncate_reason(mut s: String) -> String {
    if s.len() > 123 {
        let mut cut = 123;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

impl Pump<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        loop {
            let mut progress = false;

            // The client's messages, for the program.
            while self.to_program.len() < HIGH_WATER {
                match self.ws.poll_recv(cx) {
                    Poll::Ready(Ok(Some(msg))) => {
                        progress = true;
                        if self.program.stdin.is_some() {
                            framing::encode_for_program(
                                self.settings.mode,
                                &msg,
                                &mut self.to_program,
                            );
                        }
                    }
                    Poll::Ready(Ok(None)) => return Poll::Ready(End::ClientGone(None)),
                    Poll::Ready(Err(e)) => return Poll::Ready(End::ClientGone(Some(e))),
                    Poll::Pending => break,
                }
            }

            // ...to the program's stdin.
            while !self.to_program.is_empty() {
                let Some(stdin) = self.program.stdin.as_mut() else {
                    self.to_program.clear();
                    break;
                };
                match Pin::new(stdin).poll_write(cx, &self.to_program) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.to_program.advance(n);
                        progress = true;
                    }
                    // The program closed its stdin: what the client sends is dropped.
                    Poll::Ready(_) => {
                        self.program.stdin = None;
                        self.to_program.clear();
                        progress = true;
                    }
                    Poll::Pending => break,
                }
            }
            release_if_empty(&mut self.to_program);
            if self.client_hung_up(cx) {
                return Poll::Ready(End::ClientGone(None));
            }

            // The program's output, for the client.
            if let Err(e) = self.read_output(cx, &mut progress) {
                return Poll::Ready(End::BadOutput(e));
            }

            // Its stderr: logged, or sent tagged.
            if let Err(e) = self.read_stderr(cx, &mut progress) {
                return Poll::Ready(End::BadOutput(e));
            }

            // ...to the client.
            // (The WebSocket's `want_write`, not the engine's: over TLS, records written
            // and not flushed yet are the transport's.)
            if self.ws.want_write() {
                match self.ws.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(End::ClientGone(Some(e))),
                    Poll::Pending => {}
                }
            }

            // The program's exit (ready again on every poll once it exited): looked at once
            // its output is done, or before waiting (so that its exit wakes the task).
            let output_done = self.program.stdout.is_none()
                && (self.settings.output == Output::Plain || self.program.stderr.is_none());
            if output_done || !progress {
                if let (true, Poll::Ready(status)) = (output_done, self.program.poll_exit(cx)) {
                    // What is queued goes out before the Close frame.
                    return Poll::Ready(End::ProgramExited(status));
                }
            }

            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Whether the client hung up while its input is pushed back. The socket is not read
    /// then (that is the push-back), so its end would go unseen until the program reads
    /// again; a second registration of the socket (a duplicate descriptor, its readiness
    /// separate from the connection's) is woken by each change and reports the peer's FIN
    /// (`EPOLLRDHUP`, even behind data not yet read) or a reset. (A FIN still behind data
    /// the client's kernel could not send, into a full window, arrives only as the reset
    /// that kernel sends once its retries run out.) Over TCP and TLS, on the tokio driver or
    /// an io_uring ring (`--uring`) alike; a Unix socket or an HTTP/2 stream is not watched.
    fn client_hung_up(&mut self, cx: &mut Context<'_>) -> bool {
        if self.to_program.is_empty() {
            self.hangup = None;
            return false;
        }
        if self.to_program.len() < HIGH_WATER && self.hangup.is_none() {
            return false;
        }
        if self.hangup.is_none() {
            let Some(fd) = self.ws.get_ref().tcp_fd() else {
                return false;
            };
            match fd.try_clone_to_owned().and_then(watch) {
                Ok(watch) => self.hangup = Some(Box::new(watch)),
                Err(_) => return false,
            }
        }
        let Some(h) = self.hangup.as_ref() else {
            return false;
        };
        loop {
            match h.poll_read_ready(cx) {
                Poll::Pending => return false,
                Poll::Ready(Err(_)) => return true,
                Poll::Ready(Ok(mut guard)) => {
                    // The peer's FIN (EPOLLRDHUP: seen even behind unread data), a reset
                    // or an error.
                    let r = guard.ready();
                    if r.is_read_closed() || r.is_error() {
                        return true;
                    }
                    // Data waiting (the push-back itself): this registration's readiness
                    // is cleared so that only the next change wakes the task.
                    guard.clear_ready();
                }
            }
        }
    }

    fn read_output(
        &mut self,
        cx: &mut Context<'_>,
        progress: &mut bool,
    ) -> Result<(), framing::FramingError> {
        while self.ws.connection().queued_bytes() < HIGH_WATER {
            let Some(stdout) = self.program.stdout.as_mut() else {
                return Ok(());
            };
            let eof = match read_some(stdout, &mut self.out_buf, cx) {
                Poll::Ready(eof) => eof,
                Poll::Pending => return Ok(()),
            };
            *progress = true;
            if eof {
                self.program.stdout = None;
            }
            match self.settings.output {
                Output::Plain => framing::decode_from_program(
                    self.settings.mode,
                    &mut self.out_buf,
                    eof,
                    self.settings.out_limit,
                    &mut self.scratch,
                )?,
                Output::Tagged => decode_tagged(
                    &mut self.out_buf,
                    eof,
                    "stdout",
                    self.settings.out_limit,
                    &mut self.scratch,
                ),
            }
            release_if_empty(&mut self.out_buf);
            for msg in self.scratch.drain(..) {
                // Fails only once the connection is closing; the client is gone then.
                if self.ws.connection_mut().send(msg).is_err() {
                    break;
                }
            }
        }
        Ok(())
    }

    fn read_stderr(
        &mut self,
        cx: &mut Context<'_>,
        progress: &mut bool,
    ) -> Result<(), framing::FramingError> {
        loop {
            let tagged = self.settings.output == Output::Tagged;
            if tagged && self.ws.connection().queued_bytes() >= HIGH_WATER {
                return Ok(());
            }
            let Some(stderr) = self.program.stderr.as_mut() else {
                return Ok(());
            };
            let eof = match read_some(stderr, &mut self.err_buf, cx) {
                Poll::Ready(eof) => eof,
                Poll::Pending => return Ok(()),
            };
            *progress = true;
            if eof {
                self.program.stderr = None;
            }
            if tagged {
                decode_tagged(
                    &mut self.err_buf,
                    eof,
                    "stderr",
                    self.settings.out_limit,
                    &mut self.scratch,
                );
                for msg in self.scratch.drain(..) {
                    if self.ws.connection_mut().send(msg).is_err() {
                        break;
                    }
                }
            } else {
                framing::decode_from_program(
                    Mode::Text,
                    &mut self.err_buf,
                    eof,
                    STDERR_LINE,
                    &mut self.scratch,
                )?;
                for msg in self.scratch.drain(..) {
                    if let Message::Text(line) = msg {
                        self.report.stderr_line(line.as_str());
                    }
                }
            }
            release_if_empty(&mut self.err_buf);
        }
    }
}

/// One read from a pipe, appended to `buf`: `Ready(true)` at end of file (or on an error,
/// which ends the pipe as well). The read goes through a buffer on the stack, so that a
/// connection whose program is silent holds no read buffer at all (an idle connection
/// costs its state, not 2 x 16 KiB of room for output that may never come).
fn read_some<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<bool> {
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
    let mut rb = tokio::io::ReadBuf::uninit(&mut space);
    match Pin::new(r).poll_read(cx, &mut rb) {
        Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(true),
        Poll::Ready(Ok(())) => {
            buf.extend_from_slice(rb.filled());
            Poll::Ready(false)
        }
        Poll::Ready(Err(_)) => Poll::Ready(true),
        Poll::Pending => Poll::Pending,
    }
}

/// Lets go of a buffer's room once it is empty (an idle connection keeps none).
fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// `--passstderr`: each line becomes `{"stream":"<stream>","data":"<line>"}`.
fn decode_tagged(
    buf: &mut BytesMut,
    eof: bool,
    stream: &str,
    limit: usize,
    out: &mut Vec<Message>,
) {
    let mut lines = Vec::new();
    // Text mode cannot fail.
    let _ = framing::decode_from_program(Mode::Text, buf, eof, limit, &mut lines);
    for line in lines {
        if let Message::Text(text) = line {
            let mut json = String::with_capacity(text.len() + 32);
            json.push_str("{\"stream\":\"");
            json.push_str(stream);
            json.push_str("\",\"data\":");
            json_string(text.as_str(), &mut json);
            json.push('}');
            out.push(Message::Text(json.into()));
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn json_string(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_string("a\"b\\c\n\u{1}é", &mut s);
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001é\"");
    }

    #[test]
    fn tagged_lines() {
        let mut buf = BytesMut::from(&b"one\ntwo"[..]);
        let mut out = Vec::new();
        decode_tagged(&mut buf, false, "stderr", 0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            &out[0].payload()[..],
            br#"{"stream":"stderr","data":"one"}"#
        );
        decode_tagged(&mut buf, true, "stderr", 0, &mut out);
        assert_eq!(
            &out[1].payload()[..],
            br#"{"stream":"stderr","data":"two"}"#
        );
    }

    /// The size of the future a function of four arguments returns.
    fn future_size<A, B, C, D, F: Future>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn connection_future_stays_small() {
        // About the WebSocket (848 bytes), the program (312) and the pump (168), once
        // each: a second copy of the WebSocket or the program would show.
        struct Nothing;
        impl Report for Nothing {
            fn stderr_line(&mut self, _: &str) {}
            fn ended(&mut self, _: &End) {}
        }
        let size = future_size(run as fn(_, _, _, Nothing) -> _);
        eprintln!("bridge::run future: {size} bytes");
        assert!(size <= 1800, "the connection's future grew to {size} bytes");
    }

    #[test]
    fn close_reasons_fit_a_frame() {
        assert_eq!(truncate_reason("é".repeat(100)).len(), 122);
    }
}
