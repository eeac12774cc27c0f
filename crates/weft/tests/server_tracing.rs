//! Each connection of `weft::server` runs in a `tracing` span `conn` carrying the peer's
//! address: an event a handler records is inside it, over HTTP/1.1 and over HTTP/2 (whose
//! requests hyper runs on tasks of their own). A minimal subscriber of our own records the
//! spans and, for each event, the spans it happened in.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use weft::server::{handler_fn, Body, Server};

/// A span as created: its name and its `peer` field.
#[derive(Debug, Clone)]
struct SpanSeen {
    name: &'static str,
    peer: Option<String>,
    metadata: &'static Metadata<'static>,
}

/// An event: its message and the spans it was inside, innermost last.
#[derive(Debug, Clone)]
struct EventSeen {
    message: String,
    spans: Vec<SpanSeen>,
}

/// The subscriber: a handle on what it recorded.
#[derive(Clone, Default)]
struct Recorder(Arc<Recorded>);

#[derive(Default)]
struct Recorded {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, SpanSeen>>,
    events: Mutex<Vec<EventSeen>>,
}

thread_local! {
    /// The spans entered on this thread (the test runs on one thread).
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Collects one field's value by name.
struct FieldValue(&'static str, Option<String>);

impl Visit for FieldValue {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == self.0 {
            self.1 = Some(format!("{value:?}"));
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut peer = FieldValue("peer", None);
        span.record(&mut peer);
        let seen = SpanSeen {
            name: span.metadata().name(),
            peer: peer.1,
            metadata: span.metadata(),
        };
        self.0.spans.lock().unwrap().insert(id, seen);
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut message = FieldValue("message", None);
        event.record(&mut message);
        let spans = self.0.spans.lock().unwrap();
        let inside = ENTERED.with(|e| {
            e.borrow()
                .iter()
                .filter_map(|id| spans.get(id).cloned())
                .collect()
        });
        self.0.events.lock().unwrap().push(EventSeen {
            message: message.1.unwrap_or_default(),
            spans: inside,
        });
    }

    /// What `Span::current()` asks (weft's server hands the connection's span to the
    /// tasks hyper spawns for it).
    fn current_span(&self) -> tracing_core::span::Current {
        let current = ENTERED.with(|e| e.borrow().last().copied());
        let spans = self.0.spans.lock().unwrap();
        match current.and_then(|id| spans.get(&id).map(|s| (id, s.metadata))) {
            Some((id, metadata)) => tracing_core::span::Current::new(Id::from_u64(id), metadata),
            None => tracing_core::span::Current::none(),
        }
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|e| e.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with(|e| {
            let mut e = e.borrow_mut();
            if let Some(i) = e.iter().rposition(|id| *id == span.into_u64()) {
                e.remove(i);
            }
        });
    }
}

async fn handle(req: Request<Incoming>) -> Response<Body> {
    tracing::info!("handler ran for {}", req.uri().path());
    Response::new(Body::from("ok"))
}

/// The events whose message is `message`, with the `peer` of the `conn` span each was in.
fn conn_peers_of(recorder: &Recorder, message: &str) -> Vec<Option<String>> {
    recorder
        .0
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.message == message)
        .map(|e| {
            e.spans
                .iter()
                .find(|s| s.name == "conn")
                .and_then(|s| s.peer.clone())
        })
        .collect()
}

#[test]
fn a_handler_runs_inside_its_connections_span_with_the_peer() {
    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(recorder.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .unwrap()
            .build(handler_fn(handle))
            .unwrap();
        let addr = server.local_addr().unwrap();
        let shutdown = server.shutdown_handle();
        let served = tokio::spawn(server.serve());
        let run = async {
            // HTTP/1.1.
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let h1_peer = s.local_addr().unwrap().to_string();
            s.write_all(b"GET /h1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            assert!(out.ends_with(b"\r\n\r\nok"), "{out:?}");
            // HTTP/2 (h2c): hyper runs the request on a task of its own.
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let h2_peer = tcp.local_addr().unwrap().to_string();
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let req = Request::get(format!("http://{addr}/h2"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let res = send.send_request(req).await.unwrap();
            assert_eq!(
                &res.into_body().collect().await.unwrap().to_bytes()[..],
                b"ok"
            );
            (h1_peer, h2_peer)
        };
        let (h1_peer, h2_peer) = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("hung");
        assert_eq!(
            conn_peers_of(&recorder, "handler ran for /h1"),
            vec![Some(h1_peer)]
        );
        assert_eq!(
            conn_peers_of(&recorder, "handler ran for /h2"),
            vec![Some(h2_peer)]
        );
        shutdown.shutdown();
        served.await.unwrap().unwrap();
    });
}
