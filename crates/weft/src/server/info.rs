//! What a handler can ask about the connection a request came on: the peer, the local
//! address, the transport, and for TLS the server name (SNI), the protocol chosen by ALPN
//! and the client's certificates.

use super::stream::TransportKind;
use super::ConnCtx;
use rustls_pki_types::CertificateDer;
use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// An address at one end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Addr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket: its path, if it has one (a client's end usually has none).
    Unix(Option<PathBuf>),
    /// Not known (a connection handed over as a plain stream, stdin/stdout).
    Unknown,
}

impl Addr {
    /// The TCP address, if this is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Addr::Tcp(a) => Some(*a),
            _ => None,
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "{a}"),
            Addr::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            Addr::Unix(None) => f.write_str("unix:(unnamed)"),
            Addr::Unknown => f.write_str("(unknown)"),
        }
    }
}

/// The connection a request came on: `ConnInfo::of(&request)`. Cloning it is cheap (a
/// reference count).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    inner: Arc<Info>,
}

#[derive(Debug)]
struct Info {
    peer: Addr,
    local: Addr,
    kind: TransportKind,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    client_certificates: Vec<CertificateDer<'static>>,
}

impl ConnInfo {
    /// Describes a connection.
    pub fn new(peer: Addr, local: Addr, kind: TransportKind) -> Self {
        ConnInfo {
            inner: Arc::new(Info {
                peer,
                local,
                kind,
                sni: None,
                alpn: None,
                client_certificates: Vec::new(),
            }),
        }
    }

    /// Adds what a TLS session tells: SNI, ALPN, client certificates.
    pub(crate) fn with_tls(mut self, tls: &rustls::ServerConnection) -> Self {
        if let Some(info) = Arc::get_mut(&mut self.inner) {
            info.sni = tls.server_name().map(str::to_owned);
            info.alpn = tls.alpn_protocol().map(<[u8]>::to_vec);
            info.client_certificates = tls
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
        }
        self
    }

    /// The connection of `request`, if a `weft::server` serves it: asked from the handler
    /// (while the server calls it or polls its future, which is where handlers run), or
    /// anywhere for a request the server can upgrade (its connection travels in its
    /// extensions, for the upgrade). A plain request handed to another task is not followed
    /// there: ask before (the answer is a cheap clone, a reference count).
    pub fn of<B>(request: &http::Request<B>) -> Option<ConnInfo> {
        if let Some(ctx) = request.extensions().get::<Arc<ConnCtx>>() {
            return Some(ctx.info.clone());
        }
        with_current(|ctx| ctx.info.clone())
    }

    /// The client's address.
    pub fn peer(&self) -> &Addr {
        &self.inner.peer
    }

    /// The server's address the client connected to.
    pub fn local(&self) -> &Addr {
        &self.inner.local
    }

    /// The transport: TCP, TLS, Unix socket, other.
    pub fn transport(&self) -> TransportKind {
        self.inner.kind
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.inner.kind == TransportKind::Tls
    }

    /// The server name the TLS client asked for (SNI).
    pub fn sni(&self) -> Option<&str> {
        self.inner.sni.as_deref()
    }

    /// The protocol chosen by ALPN (`h2`, `http/1.1`), for TLS.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.inner.alpn.as_deref()
    }

    /// The client's certificate chain, when the TLS configuration asks for one
    /// (end-entity first); empty otherwise.
    pub fn client_certificates(&self) -> &[CertificateDer<'static>] {
        &self.inner.client_certificates
    }
}

thread_local! {
    /// The connection whose handler this thread is calling or polling (a plain request
    /// carries nothing: an entry in its extensions would cost three allocations per request).
    /// `ManuallyDrop`: a type without a destructor makes the thread local a plain load and
    /// store, with no registration to check; what it holds is always put back or taken
    /// out by [`swap`], so nothing is left to drop when the thread ends.
    static CURRENT: Cell<ManuallyDrop<Option<Arc<ConnCtx>>>> =
        const { Cell::new(ManuallyDrop::new(None)) };
}

/// Makes `ctx` the current connection of this thread; returns the one it was.
#[inline]
fn swap(ctx: Option<Arc<ConnCtx>>) -> Option<Arc<ConnCtx>> {
    match CURRENT.try_with(|c| c.replace(ManuallyDrop::new(ctx))) {
        Ok(previous) => ManuallyDrop::into_inner(previous),
        // Not reachable for a thread local without a destructor; nothing is current.
        Err(_) => None,
    }
}

/// Runs `f` with `ctx` as the current connection of this thread ([`ConnInfo::of`]), then
/// puts it back in `ctx` (a panic in `f` too). Moves the `Arc`, no reference count.
#[inline]
pub(crate) fn enter<R>(ctx: &mut Option<Arc<ConnCtx>>, f: impl FnOnce() -> R) -> R {
    struct Restore<'a> {
        slot: &'a mut Option<Arc<ConnCtx>>,
        previous: Option<Arc<ConnCtx>>,
    }
    impl Drop for Restore<'_> {
        #[inline]
        fn drop(&mut self) {
            *self.slot = swap(self.previous.take());
        }
    }
    let previous = swap(ctx.take());
    let _restore = Restore {
        slot: ctx,
        previous,
    };
    f()
}

/// `ctx` as the current connection of this thread until the guard is dropped (a clone of
/// the `Arc`: for the handler's call, where a closure would cost moves of the request and
/// the handler's future).
pub(crate) struct SetCurrent {
    previous: Option<Arc<ConnCtx>>,
}

impl SetCurrent {
    #[inline]
    pub(crate) fn new(ctx: Arc<ConnCtx>) -> SetCurrent {
        SetCurrent {
            previous: swap(Some(ctx)),
        }
    }
}

impl Drop for SetCurrent {
    #[inline]
    fn drop(&mut self) {
        drop(swap(self.previous.take()));
    }
}

/// `f` on the current connection of this thread, if there is one.
pub(crate) fn with_current<R>(f: impl FnOnce(&ConnCtx) -> R) -> Option<R> {
    let ctx = swap(None);
    let result = ctx.as_deref().map(f);
    swap(ctx);
    result
}

/// The current connection of this thread, if there is one.
pub(crate) fn current() -> Option<Arc<ConnCtx>> {
    let ctx = swap(None);
    let clone = ctx.clone();
    swap(ctx);
    clone
}
