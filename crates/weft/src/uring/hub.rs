//! A WebSocket server that owns its connections on one io_uring ring: the engines live in
//! a table of the ring's thread, each completion goes straight to its connection's engine,
//! and the application is called back ([`App`]) — no task, no future, no stream and no
//! waker per connection (uWebSockets' model). Where the tokio driver over io_uring
//! ([`Uring`](super::Uring)) touches a task, a future, a stream, the shared ring's slot and
//! the engine for each echo, a hub touches the engine and its buffers: the least memory
//! per message, which is what is left to save once the kernel is entered once per batch
//! (bench/FINDINGS.md, "Issue 12's targets").
//!
//! One [`Hub`] is one thread and one ring; run one per core on listeners bound with
//! `SO_REUSEPORT` to use several. The hub does the opening handshake itself (every check of
//! [`parse_request`], a 4xx for a bad request, the application's [`Reject`]), negotiates
//! permessage-deflate as [`Options::deflate`] allows, closes with the engine's close code
//! on a protocol error, and answers pings. A connection's next receive is armed one turn
//! of the ring after its send (the send has usually completed by then, and the peer's next
//! message often arrived), and then even if the send is still in flight: a peer that writes
//! before it reads is served. Receiving stops while more than
//! [`Options::write_buffer_limit`] bytes wait to be sent, so a peer that does not read
//! cannot make the hub hold more.
//!
//! A busy connection keeps a receive armed into its engine's read room
//! ([`Config::read_buffer_size`](weft_proto::Config), 4 KiB by default, growing with what
//! arrives). One that received nothing for a whole second (and sends nothing) is swept at
//! the next one-second tick: its receive is cancelled, its engine's buffers and its send
//! buffer freed, and its socket waited on with a poll that holds no memory, until something
//! arrives (about 1.5 KiB of heap per idle connection: bench/RESULTS.md, "Idle
//! connections"). The handshake's and the close's time limits are checked at that tick,
//! and so is keepalive ([`Options::ping_interval`] and `pong_timeout`, in whole seconds).
//! A callback sends to other connections with [`Ctx::send_to`], other threads with a
//! [`Handle`]. Not yet (each is what the other drivers have): TLS, and handing over
//! connections that `weft::server` upgraded.
//!
//! ```no_run
//! use weft::uring::{App, Ctx, Hub};
//! use weft::{Accept, Message, Reject, Request};
//!
//! struct Echo;
//!
//! impl App for Echo {
//!     type State = ();
//!     fn open(&mut self, _req: &Request) -> Result<(Accept, ()), Reject> {
//!         Ok((Accept::new(), ()))
//!     }
//!     fn message(&mut self, _state: &mut (), message: Message, ctx: &mut Ctx<'_>) {
//!         let _ = ctx.send(message);
//!     }
//! }
//!
//! let listener = std::net::TcpListener::bind("127.0.0.1:9001")?;
//! Hub::new(listener)?.run(Echo)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use super::owned::{Completion, Op, OwnedRing, SendBuf};
use crate::accept::respond;
use crate::error::Result;
use crate::gather::{self, Plan, MAX_IOVECS};
use crate::options::Options;
use crate::{Accept, Reject};
use bytes::BytesMut;
use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_proto::handshake::{parse_request, rejection_bytes, Request};
use weft_proto::{CloseCode, Connection, Event, Message, RecvLevel, Role};

/// The application of a [`Hub`]: called on the hub's thread for each connection's events.
/// A callback must not block: every connection of the hub waits while it runs.
pub trait App {
    /// What the application keeps per connection.
    type State;

    /// A client asks to open a WebSocket with `request` (already checked): accept it (with
    /// a subprotocol, extra headers) and make its state, or refuse it with a status.
    fn open(&mut self, request: &Request) -> std::result::Result<(Accept, Self::State), Reject>;

    /// The 101 is queued: the connection is open (a greeting sent here goes right after it).
    fn opened(&mut self, state: &mut Self::State, ctx: &mut Ctx<'_>) {
        let _ = (state, ctx);
    }

    /// A whole message arrived.
    fn message(&mut self, state: &mut Self::State, message: Message, ctx: &mut Ctx<'_>);

    /// Connection `id` is over: `status` is the peer's close code (1005 if its close
    /// carried none), or 1006 if it ended without a close frame (reset, a protocol error, a
    /// time limit, the hub stopping). Its id may be given to a new connection after this.
    fn closed(&mut self, id: ConnId, state: Self::State, status: CloseCode) {
        let _ = (id, state, status);
    }
}

/// One connection of a hub, as a callback sees it.
#[derive(Debug)]
pub struct Ctx<'a> {
    conn: &'a mut Connection,
    id: ConnId,
    outbox: &'a mut Vec<Command>,
}

impl Ctx<'_> {
    /// Queues a message; it goes out when the callback returns (with everything else the
    /// callbacks of this turn queued, in one submission).
    pub fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        self.conn.send(message.into())?;
        Ok(())
    }

    /// Starts the close handshake; [`App::closed`] follows when it completes.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.conn.close(code, reason)?;
        Ok(())
    }

    /// Bytes queued and not yet sent (for backpressure: stop producing above a limit).
    pub fn queued_bytes(&self) -> usize {
        self.conn.queued_bytes()
    }

    /// This connection's id (unique in its hub while the connection lives).
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Queues a message for another connection of this hub (a broadcast, a relay): it is
    /// handed to that connection's engine once this turn's callbacks are done, and goes out
    /// with the rest. Dropped if that connection has closed meanwhile. A connection that
    /// already has more than [`Options::write_buffer_limit`] bytes waiting while its socket
    /// is full (a client that does not read) is closed with 1008 instead, so such a client
    /// holds at most that limit, plus what one turn sends it before its socket is seen
    /// full, plus one send in flight.
    pub fn send_to(&mut self, to: ConnId, message: impl Into<Message>) {
        self.outbox.push(Command::Send(to, message.into()));
    }

    /// The engine, for everything else it does (frames, streamed sends, its state).
    pub fn connection(&mut self) -> &mut Connection {
        self.conn
    }
}

/// A connection's id within its hub: its slot and the slot's generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    slot: u32,
    generation: u32,
}

/// Ends a hub's [`run`](Hub::run) from any thread: the hub stops accepting, closes its
/// connections with 1001 (going away) and returns once they are closed (at most the close
/// timeout later).
#[derive(Debug)]
pub struct Stopper(Arc<Inbox>);

impl Stopper {
    /// Asks the hub to stop (once is enough; more are harmless).
    pub fn stop(&self) -> io::Result<()> {
        self.0.stop.store(true, Ordering::SeqCst);
        self.0.wake()
    }
}

/// Reaches a hub's connections from any thread: a message or a close for a connection is
/// handed to its engine on the hub's thread at its next turn (the hub is woken). Cheap to
/// clone. As with [`Ctx::send_to`], what is sent to a connection that has closed is dropped,
/// and one with more than [`Options::write_buffer_limit`] bytes waiting while its socket is
/// full is closed with 1008.
#[derive(Clone, Debug)]
pub struct Handle(Arc<Inbox>);

impl Handle {
    /// Queues a message for connection `to`. Fails once the hub is stopping (what was
    /// queued before goes out ahead of its 1001) or has stopped, or never ran.
    pub fn send(&self, to: ConnId, message: impl Into<Message>) -> io::Result<()> {
        self.post(Command::Send(to, message.into()))
    }

    /// Starts the close handshake of connection `to`. Fails as [`send`](Self::send)
    /// does, and at once for a code that may not be sent or a reason over 123 bytes.
    pub fn close(&self, to: ConnId, code: CloseCode, reason: &str) -> io::Result<()> {
        if !code.is_sendable() || reason.len() > 123 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a close code that may not be sent, or a reason over 123 bytes",
            ));
        }
        self.post(Command::Close(to, code, reason.to_owned()))
    }

    /// Stops the hub, as [`Stopper::stop`] does.
    pub fn stop(&self) -> io::Result<()> {
        Stopper(self.0.clone()).stop()
    }

    fn post(&self, command: Command) -> io::Result<()> {
        let mut commands = self.0.lock();
        if self.0.gone.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the hub is stopping or has stopped",
            ));
        }
        commands.push(command);
        drop(commands);
        self.0.wake()
    }
}

/// What a [`Handle`] or [`Ctx::send_to`] asks of a connection.
#[derive(Debug)]
enum Command {
    Send(ConnId, Message),
    Close(ConnId, CloseCode, String),
}

/// The hub's side of its handles: their commands, and the socket whose byte wakes the ring.
#[derive(Debug)]
struct Inbox {
    commands: Mutex<Vec<Command>>,
    stop: AtomicBool,
    /// A wake-up byte is on its way and the commands are not taken yet: no other is needed.
    woken: AtomicBool,
    waker: UnixStream,
    /// The hub is stopping, or its `run` has returned or never started: commands are
    /// refused (set under the commands' lock).
    gone: AtomicBool,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Command>> {
        // (A panic elsewhere while the lock was held left a whole vector: keep using it.)
        self.commands.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The commands posted so far (the ring takes them when woken).
    fn take_commands(&self) -> Vec<Command> {
        std::mem::take(&mut *self.lock())
    }

    /// Refuses commands from now on; returns those not taken yet.
    fn close(&self) -> Vec<Command> {
        let mut commands = self.lock();
        self.gone.store(true, Ordering::SeqCst);
        std::mem::take(&mut *commands)
    }

    fn wake(&self) -> io::Result<()> {
        if self.woken.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        match (&self.waker).write(&[1]) {
            Ok(_) => Ok(()),
            // Its buffer is full of earlier wake-ups, or the hub is gone: either way.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => {
                // No byte is on its way: the next post tries again.
                self.woken.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}

/// Closes the inbox when dropped: at the end of `run` (also an early or unwinding one), or
/// with a `Hub` that never ran. Handles then fail instead of queueing for no one.
#[derive(Debug)]
struct Serving(Arc<Inbox>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A server on one io_uring ring (see the [module](self)).
#[derive(Debug)]
pub struct Hub {
    listener: TcpListener,
    options: Options,
    wake_rx: UnixStream,
    serving: Serving,
}

/// Submission entries of a hub's ring.
const ENTRIES: u32 = 1024;
/// Tags: a connection's operations are `slot << 2 | kind`; the hub's own are above.
const RECV: u64 = 0;
const SEND: u64 = 1;
const ACCEPT: u64 = u64::MAX - 1;
const TICK: u64 = u64::MAX - 2;
const WAKE: u64 = u64::MAX - 3;
/// How often time limits are checked.
const TICK_EVERY: Duration = Duration::from_secs(1);
/// A request head is read in steps of this much.
const HEAD_STEP: usize = 1024;
/// A connection keeps its send buffer's gathering memory up to this much between sends (the
/// most `gather.rs` gathers).
const KEEP_SEND_BUFFER: usize = 16 * 1024;

impl Hub {
    /// A hub that will accept on `listener` (default [`Options`]).
    pub fn new(listener: TcpListener) -> io::Result<Hub> {
        let (wake_rx, waker) = UnixStream::pair()?;
        waker.set_nonblocking(true)?;
        Ok(Hub {
            listener,
            options: Options::default(),
            wake_rx,
            serving: Serving(Arc::new(Inbox {
                commands: Mutex::new(Vec::new()),
                stop: AtomicBool::new(false),
                woken: AtomicBool::new(false),
                waker,
                gone: AtomicBool::new(false),
            })),
        })
    }

    /// The WebSockets' options: the engine's [`Config`](weft_proto::Config) (messages
    /// are always delivered whole), permessage-deflate, `server_limits`,
    /// `handshake_timeout`, `close_timeout`, `write_buffer_limit`, `ping_interval` and
    /// `pong_timeout` (checked once a second).
    pub fn options(mut self, options: Options) -> Hub {
        self.options = options;
        self
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stopper(&self) -> io::Result<Stopper> {
        Ok(Stopper(self.serving.0.clone()))
    }

    /// A handle that sends to this hub's connections from any thread ([`Handle`]).
    pub fn handle(&self) -> Handle {
        Handle(self.serving.0.clone())
    }

    /// Serves on this thread until stopped ([`Stopper`]) or the ring fails. Fails at once
    /// where io_uring is missing or forbidden (see [`probe`](super::probe)).
    pub fn run<A: App>(self, app: A) -> io::Result<()> {
        let Hub {
            listener,
            options,
            wake_rx,
            serving,
        } = self;
        let mut ring = OwnedRing::new(ENTRIES)?;
        let accept = ring.accept(listener.as_raw_fd(), ACCEPT);
        let tick = ring.timeout(TICK_EVERY, TICK);
        ring.recv_vec(wake_rx.as_raw_fd(), Vec::with_capacity(8), WAKE);
        let mut hub = Running {
            app,
            ring,
            listener,
            options,
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            live: 0,
            touched: Vec::new(),
            waiting: Vec::new(),
            stopping: false,
            accept: Some(accept),
            tick: Some(tick),
            ticks: 0,
            wake_rx,
            inbox: serving.0.clone(),
            outbox: Vec::new(),
        };
        hub.serve()
        // (`serving` drops here, or as this unwinds: the handles fail from then on.)
    }
}

/// One connection in the table.
struct Conn<S> {
    tcp: TcpStream,
    generation: u32,
    /// The request head while it is read.
    head: Vec<u8>,
    /// The handshake's answer, sent before anything of the engine's.
    answer: Vec<u8>,
    /// Refused: end once the answer is sent.
    refused: bool,
    /// The engine and the application's state, once open.
    ws: Option<Connection>,
    state: Option<S>,
    /// A receive (or, idle, a wait for readability) is in flight.
    recv_busy: bool,
    /// The receive's key (for the idle sweep's cancel).
    recv_key: u64,
    /// The idle sweep cancelled the receive: its room comes back with `-ECANCELED`.
    cancelling: bool,
    /// Idle: waiting for the socket to be readable, with no room lent.
    polling: bool,
    /// The next receive waits for the end of the next turn (`pump`).
    recv_waits: bool,
    /// The last receive got less than its room: the engine is told once the next room is
    /// lent (`pump`).
    drained: bool,
    send_busy: bool,
    /// The send buffer, kept between sends.
    send_buf: Option<Box<SendBuf>>,
    /// The peer closed its side, or the socket failed: end once nothing is in flight.
    eof: bool,
    /// Ending: shut down, waiting for its operations to complete.
    ending: bool,
    /// When a time limit runs out (the handshake's, then the close's).
    deadline: Option<Instant>,
    /// The tick at which something last arrived, or the connection opened (keepalive, the
    /// idle sweep).
    heard: u64,
    /// The tick at which a keepalive ping went out, unanswered so far.
    pinged: Option<u64>,
}

impl<S> Conn<S> {
    /// The id of this connection, in slot `i`.
    fn id(&self, i: usize) -> ConnId {
        ConnId {
            slot: i as u32,
            generation: self.generation,
        }
    }
}

struct Running<A: App> {
    app: A,
    ring: OwnedRing,
    listener: TcpListener,
    options: Options,
    conns: Vec<Option<Conn<A::State>>>,
    /// Each slot's generation (one on each time it is freed).
    generations: Vec<u32>,
    free: Vec<usize>,
    live: usize,
    /// Connections that had a completion this turn: their next operations are decided
    /// once all completions are handled.
    touched: Vec<usize>,
    /// Connections whose receive waits for the end of the next turn (`pump`).
    waiting: Vec<usize>,
    stopping: bool,
    /// The multishot accept's key, while it runs.
    accept: Option<u64>,
    /// The tick's key, while it runs.
    tick: Option<u64>,
    /// Ticks so far: the clock of keepalive.
    ticks: u64,
    /// The socket the handles wake the ring with, and what they ask.
    wake_rx: UnixStream,
    inbox: Arc<Inbox>,
    /// Commands for connections from `Ctx::send_to` and the inbox, done at the turn's end.
    outbox: Vec<Command>,
}

impl<A: App> Running<A> {
    fn serve(&mut self) -> io::Result<()> {
        let mut done = Vec::with_capacity(ENTRIES as usize);
        loop {
            // While receives wait for the next turn, it does not wait for completions.
            let waiting = std::mem::take(&mut self.waiting);
            self.ring.turn(waiting.is_empty(), &mut done)?;
            for c in done.drain(..) {
                self.complete(c);
            }
            for i in waiting {
                if let Some(Some(c)) = self.conns.get_mut(i) {
                    c.recv_waits = false;
                    self.touched.push(i);
                }
            }
            self.deliver();
            // Bounded by the table's size: each connection's next operations.
            let mut touched = std::mem::take(&mut self.touched);
            touched.sort_unstable();
            touched.dedup();
            for i in touched.drain(..) {
                self.pump(i);
            }
            self.touched = touched;
            if self.stopping && self.live == 0 {
                if let Some(t) = self.tick.take() {
                    self.ring.cancel(t);
                }
                if self.ring.in_flight() == 0 {
                    return Ok(());
                }
            }
        }
    }

    fn complete(&mut self, c: Completion) {
        match c.tag {
            ACCEPT => {
                if let Some(fd) = c.accepted {
                    self.accepted(TcpStream::from(fd));
                }
                if !c.more {
                    self.accept = None;
                    if c.result < 0 && c.result != -libc::ECANCELED {
                        // Out of descriptors, or the like: accepting again at once would
                        // fail again at once; the next tick does.
                        tracing::warn!(
                            "hub: accept failed ({}); accepting again within a second",
                            io::Error::from_raw_os_error(-c.result)
                        );
                    } else {
                        self.accept_again();
                    }
                }
            }
            TICK => {
                self.tick = None;
                self.tick();
                if self.accept.is_none() {
                    self.accept_again();
                }
                if !(self.stopping && self.live == 0) {
                    self.tick = Some(self.ring.timeout(TICK_EVERY, TICK));
                }
            }
            WAKE => {
                if c.result <= 0 {
                    // (The hub holds the other end, so this is a failed receive: the
                    // handles cannot reach it any more; `run` goes on until the ring fails.)
                    tracing::warn!("hub: the handles' socket failed ({})", c.result);
                    return;
                }
                // Cleared before the commands are taken: one posted after this wakes again.
                self.inbox.woken.store(false, Ordering::SeqCst);
                self.outbox.append(&mut self.inbox.take_commands());
                if self.inbox.stop.load(Ordering::SeqCst) {
                    self.stop();
                } else if let Some(Op::RecvVec(mut buf)) = c.op {
                    buf.clear();
                    self.ring.recv_vec(self.wake_rx.as_raw_fd(), buf, WAKE);
                }
            }
            tag => {
                let i = (tag >> 2) as usize;
                self.touched.push(i);
                match (tag & 3, c.op) {
                    (RECV, Some(Op::RecvVec(head))) => self.head_received(i, head, c.result),
                    (RECV, Some(Op::Recv(room))) => self.received(i, room, c.result),
                    (RECV, Some(Op::Poll)) => self.readable(i, c.result),
                    (SEND, Some(Op::Send(buf))) => self.sent(i, buf, c.result),
                    _ => {}
                }
            }
        }
    }

    /// Hands the commands of `Ctx::send_to` and of the handles to their connections.
    fn deliver(&mut self) {
        let mut outbox = std::mem::take(&mut self.outbox);
        // Bounded by the commands queued before this call: delivering queues none.
        for command in outbox.drain(..) {
            let to = match &command {
                Command::Send(to, _) | Command::Close(to, ..) => *to,
            };
            let i = to.slot as usize;
            let Some(Some(c)) = self.conns.get_mut(i) else {
                continue;
            };
            if c.generation != to.generation {
                // That connection is gone (its slot is another's now).
                continue;
            }
            // (A send still in flight a turn after it was submitted usually found the
            // socket full.)
            let blocked = c.send_busy;
            let Some(ws) = c.ws.as_mut() else {
                continue;
            };
            match command {
                Command::Send(_, message) => {
                    if blocked && ws.queued_bytes() > self.options.write_buffer_limit {
                        if ws.close_sent().is_none() {
                            tracing::debug!("hub: connection {i} does not read; closing it");
                            let _ = ws.close(CloseCode::POLICY_VIOLATION, "not reading");
                        }
                    } else {
                        // (Fails only once the connection is closing: then it is dropped.)
                        let _ = ws.send(message);
                    }
                }
                Command::Close(_, code, reason) => {
                    let _ = ws.close(code, &reason);
                }
            }
            if ws.close_sent().is_some() && c.deadline.is_none() {
                c.deadline = Some(Instant::now() + self.options.close_timeout);
            }
            self.touched.push(i);
        }
        self.outbox = outbox;
    }

    /// Starts the multishot accept again (it ended), unless stopping.
    fn accept_again(&mut self) {
        if !self.stopping {
            let fd = self.listener.as_raw_fd();
            self.accept = Some(self.ring.accept(fd, ACCEPT));
        }
    }

    fn accepted(&mut self, tcp: TcpStream) {
        if self.stopping {
            return;
        }
        let _ = tcp.set_nodelay(true);
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.generations.push(0);
            self.conns.len() - 1
        });
        let generation = self.generations[i];
        let deadline = self.options.handshake_timeout.map(|d| Instant::now() + d);
        self.conns[i] = Some(Conn {
            tcp,
            generation,
            head: Vec::with_capacity(HEAD_STEP),
            answer: Vec::new(),
            refused: false,
            ws: None,
            state: None,
            recv_busy: false,
            recv_key: 0,
            cancelling: false,
            polling: false,
            recv_waits: false,
            drained: false,
            send_busy: false,
            send_buf: None,
            eof: false,
            ending: false,
            deadline,
            heard: self.ticks,
            pinged: None,
        });
        self.live += 1;
        self.touched.push(i);
    }

    fn head_received(&mut self, i: usize, mut head: Vec<u8>, result: i32) {
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        c.recv_busy = false;
        if result <= 0 || c.ending {
            c.eof = true;
            return;
        }
        let parsed = match parse_request(&head, &self.options.server_limits) {
            Ok(Some(done)) => done,
            Ok(None) => {
                c.head = head;
                return;
            }
            Err(e) => {
                c.answer = rejection_bytes(&e);
                c.refused = true;
                return;
            }
        };
        let (request, consumed) = parsed;
        let (decision, state) = match self.app.open(&request) {
            Ok((accept, state)) => (Ok(accept), Some(state)),
            Err(reject) => (Err(reject), None),
        };
        let (answer, accepted, mut config) = respond(&request, decision, &self.options);
        c.answer = answer;
        let Some(mut state) = state.filter(|_| accepted) else {
            c.refused = true;
            return;
        };
        config.recv_level = RecvLevel::Message;
        let mut ws = Connection::new(Role::Server, config);
        ws.receive(&head[consumed..]);
        head.clear();
        c.deadline = None;
        c.heard = self.ticks;
        let id = c.id(i);
        let ctx = &mut Ctx {
            conn: &mut ws,
            id,
            outbox: &mut self.outbox,
        };
        self.app.opened(&mut state, ctx);
        c.ws = Some(ws);
        c.state = Some(state);
        self.events(i);
    }

    fn received(&mut self, i: usize, room: BytesMut, result: i32) {
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        c.recv_busy = false;
        let swept = std::mem::take(&mut c.cancelling) && result == -libc::ECANCELED;
        let Some(ws) = c.ws.as_mut() else {
            return;
        };
        let short = result <= 0 || (result as usize) < room.capacity();
        ws.read_done(room);
        if swept && !c.ending {
            // Idle (see `tick`): the engine lets its buffers go, and the socket is waited on
            // with no memory until something arrives.
            ws.release_idle_buffers();
            if !c.send_busy {
                c.send_buf = None;
            }
            c.polling = true;
            c.recv_busy = true;
            let fd = c.tcp.as_raw_fd();
            self.ring.poll_readable(fd, (i as u64) << 2 | RECV);
            return;
        }
        if result <= 0 {
            // 0: the peer closed its side; below: the socket failed.
            c.eof = true;
            return;
        }
        c.heard = self.ticks;
        c.pinged = None;
        self.events(i);
        if short {
            if let Some(Some(c)) = self.conns.get_mut(i) {
                c.drained = true;
            }
        }
    }

    /// An idle connection's socket is readable (or hung up, or failed): `pump` arms a
    /// receive into a room again, which learns which.
    fn readable(&mut self, i: usize, result: i32) {
        if let Some(Some(c)) = self.conns.get_mut(i) {
            c.recv_busy = false;
            c.polling = false;
            if result < 0 && result != -libc::ECANCELED {
                c.eof = true;
            }
        }
    }

    /// Hands every event the engine has to the application.
    fn events(&mut self, i: usize) {
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        let id = c.id(i);
        let (Some(ws), Some(state)) = (c.ws.as_mut(), c.state.as_mut()) else {
            return;
        };
        // Bounded by the bytes received: each event consumes some.
        loop {
            match ws.poll_event() {
                Ok(Some(Event::Message(m))) => {
                    let ctx = &mut Ctx {
                        conn: ws,
                        id,
                        outbox: &mut self.outbox,
                    };
                    self.app.message(state, m, ctx);
                }
                Ok(Some(_)) => {}
                // A protocol error queued its close; the connection ends once it is sent.
                Ok(None) | Err(_) => break,
            }
        }
        if ws.close_sent().is_some() && c.deadline.is_none() {
            c.deadline = Some(Instant::now() + self.options.close_timeout);
        }
    }

    fn sent(&mut self, i: usize, mut buf: Box<SendBuf>, result: i32) {
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        c.send_busy = false;
        if result < 0 && result != -libc::EAGAIN && result != -libc::EINTR {
            // The peer is gone: nothing queued can be sent.
            c.eof = true;
            buf.clear(0);
            c.send_buf = Some(buf);
            return;
        }
        let n = usize::try_from(result).unwrap_or(0);
        if n >= buf.len() {
            // A large payload sent from the engine's memory goes back to it: the next room
            // is made in that memory, warm in the cache, instead of a new allocation.
            if let (Some(p), Some(ws)) = (buf.take_largest(), c.ws.as_mut()) {
                ws.recycle(p);
            }
        }
        buf.advance(n);
        if buf.len() > 0 {
            // The rest, at once (the socket took less than all).
            c.send_busy = true;
            let fd = c.tcp.as_raw_fd();
            self.ring.send(fd, buf, (i as u64) << 2 | SEND);
            return;
        }
        buf.clear(KEEP_SEND_BUFFER);
        c.send_buf = Some(buf);
    }

    /// Connection `i`'s next operations: a send if anything waits, a receive unless one is
    /// armed (or the peer should be pushed back), or its end.
    fn pump(&mut self, i: usize) {
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        let fd = c.tcp.as_raw_fd();
        let mut sent_now = false;
        if !c.send_busy && !c.ending && !c.eof {
            if let Some(buf) = next_send(c) {
                c.send_busy = true;
                sent_now = true;
                self.ring.send(fd, buf, (i as u64) << 2 | SEND);
            }
        }
        let done = match &c.ws {
            _ if c.eof || c.ending => true,
            None => c.refused && !c.send_busy,
            Some(ws) => ws.is_done() && !c.send_busy,
        };
        if done {
            self.end(i);
            return;
        }
        if c.refused {
            return;
        }
        match c.ws.as_mut() {
            _ if c.recv_busy || c.recv_waits => return,
            // An answer is on its way: the receive waits for the end of the next turn, by
            // when the send has usually completed and the peer's next message has often
            // arrived (the receive then completes at once instead of waiting in the kernel
            // for data), and it is armed then whether or not the send completed (a peer
            // that writes before it reads is served).
            _ if sent_now => {
                c.recv_waits = true;
                self.waiting.push(i);
                return;
            }
            None => {
                let mut head = std::mem::take(&mut c.head);
                let limit = self.options.server_limits.max_head_size + 1;
                head.reserve(HEAD_STEP.min(limit.saturating_sub(head.len())).max(1));
                c.recv_busy = true;
                self.ring.recv_vec(fd, head, (i as u64) << 2 | RECV);
            }
            Some(ws) => {
                if ws.want_read() && ws.queued_bytes() < self.options.write_buffer_limit {
                    c.recv_busy = true;
                    let room = ws.lend_read_room();
                    c.recv_key = self.ring.recv(fd, room, (i as u64) << 2 | RECV);
                }
            }
        }
        if let (true, Some(ws)) = (std::mem::take(&mut c.drained), c.ws.as_mut()) {
            // Told after the next room is lent: the read buffer stays in the receive (a
            // connection always has one armed, so giving it back would only make a new one
            // per message), and an idle connection's other buffers go back.
            ws.read_would_block();
        }
    }

    /// Ends connection `i`: shuts its socket (which completes a receive or an idle poll in
    /// flight) and frees its slot once nothing is in flight.
    fn end(&mut self, i: usize) {
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        if !c.ending {
            c.ending = true;
            let _ = c.tcp.shutdown(Shutdown::Both);
        }
        if c.recv_busy || c.send_busy {
            return;
        }
        let Some(c) = self.conns[i].take() else {
            return;
        };
        let status =
            c.ws.as_ref()
                .map_or(CloseCode::ABNORMAL, |ws| ws.close_status());
        let id = c.id(i);
        if let Some(state) = c.state {
            self.app.closed(id, state, status);
        }
        self.generations[i] = c.generation.wrapping_add(1);
        self.free.push(i);
        self.live -= 1;
        // (Its socket closes here.)
    }

    /// Once a second: the time limits, the idle sweep (see the module docs), and keepalive
    /// (`ping_interval`: a ping after that long without anything received, the connection
    /// dropped when nothing arrives within `pong_timeout` of it; both counted in whole
    /// ticks, at least one).
    fn tick(&mut self) {
        self.ticks += 1;
        let now = Instant::now();
        let in_ticks = |d: Duration| (d.as_millis() / TICK_EVERY.as_millis()).max(1) as u64;
        let keepalive = self
            .options
            .ping_interval
            .map(|every| (in_ticks(every), in_ticks(self.options.pong_timeout)));
        for i in 0..self.conns.len() {
            let Some(Some(c)) = self.conns.get_mut(i) else {
                continue;
            };
            if c.deadline.is_some_and(|d| d <= now) {
                c.eof = true;
                self.touched.push(i);
                continue;
            }
            // Idle sweep: nothing arrived for a whole tick, nothing is being sent, and the
            // receive waits in the kernel with the engine's room: cancel it (its completion,
            // `received`, frees the buffers and waits for readability with no memory).
            // (Cancelled again at each tick until the room is back: a cancel that found the
            // receive running may not have stopped it.)
            if c.recv_busy
                && !c.polling
                && !c.send_busy
                && !c.ending
                && self.ticks - c.heard >= 2
                && c.ws.as_ref().is_some_and(|ws| ws.queued_bytes() == 0)
            {
                c.cancelling = true;
                self.ring.cancel(c.recv_key);
            }
            let (Some((every, patience)), Some(ws)) = (keepalive, c.ws.as_mut()) else {
                continue;
            };
            match c.pinged {
                Some(at) if self.ticks - at >= patience => {
                    // Nothing arrived since the ping: the peer or the path is gone.
                    c.eof = true;
                    self.touched.push(i);
                }
                None if self.ticks - c.heard >= every
                    && ws.close_sent().is_none()
                    && ws.ping(b"").is_ok() =>
                {
                    c.pinged = Some(self.ticks);
                    self.touched.push(i);
                }
                _ => {}
            }
        }
    }

    /// Stops accepting and closes every connection with 1001.
    fn stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        // Handles are refused from here on; what they and this turn's callbacks sent
        // before goes out ahead of the 1001.
        let mut posted = self.inbox.close();
        self.outbox.append(&mut posted);
        self.deliver();
        if let Some(a) = self.accept.take() {
            self.ring.cancel(a);
        }
        let close_by = Instant::now() + self.options.close_timeout;
        for i in 0..self.conns.len() {
            let Some(Some(c)) = self.conns.get_mut(i) else {
                continue;
            };
            match c.ws.as_mut() {
                Some(ws) => {
                    if ws.close_sent().is_none() && !ws.is_closed() {
                        let _ = ws.close(CloseCode::GOING_AWAY, "");
                    }
                    c.deadline = Some(c.deadline.map_or(close_by, |d| d.min(close_by)));
                }
                None => c.eof = true,
            }
            self.touched.push(i);
        }
    }
}

/// The send that connection `c` needs next, if any: the handshake's answer, else what the
/// engine queued (as `gather.rs` plans it for the other drivers).
fn next_send<S>(c: &mut Conn<S>) -> Option<Box<SendBuf>> {
    if !c.answer.is_empty() {
        let mut buf = c.send_buf.take().unwrap_or_default();
        buf.clear(KEEP_SEND_BUFFER);
        std::mem::swap(&mut buf.flat, &mut c.answer);
        return Some(buf);
    }
    let ws = c.ws.as_mut()?;
    if !ws.want_write() {
        return None;
    }
    let mut buf = c.send_buf.take().unwrap_or_default();
    let q = ws.outgoing();
    // The drivers' one rule (gather.rs): small pieces gathered into one `send`, else up to
    // MAX_IOVECS pieces as they are. Bounded by the queue (a gathered one holds at most
    // 16 KiB) or by MAX_IOVECS.
    let gather = gather::plan(q, true) == Plan::Gather;
    while gather || buf.pieces.len() < MAX_IOVECS {
        match q.pop_chunk() {
            Some(p) if gather => buf.flat.extend_from_slice(&p),
            Some(p) if !p.is_empty() => buf.pieces.push(p),
            Some(_) => {}
            None => break,
        }
    }
    if buf.len() == 0 {
        c.send_buf = Some(buf);
        return None;
    }
    Some(buf)
}
