//! The handler: an async fn ([`handler_fn`]) or any `tower::Service` from
//! `http::Request<Incoming>` to an `http::Response`, and its adapter to hyper, which puts
//! the connection's [`ConnInfo`](super::ConnInfo) within each request's reach.

use super::conn::Busy;
use super::info::SetCurrent;
use super::ConnCtx;
use http_body::Body as HttpBody;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// An error of any kind, as hyper and tower pass them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a server's handler is: a `tower::Service` from `http::Request<Incoming>` to an
/// `http::Response` whose body hyper can send, cloned per connection. Implemented for every
/// such service ([`handler_fn`] makes one from an async fn; an axum `Router` is one).
pub trait Handler:
    tower_service::Service<
        http::Request<Incoming>,
        Response = http::Response<Self::ResBody>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type ResBody: HttpBody<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> Handler for S
where
    S: tower_service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: HttpBody<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type ResBody = B;
}

/// A handler made from an async fn: see [`handler_fn`].
#[derive(Debug, Clone, Copy)]
pub struct HandlerFn<F>(F);

/// Makes a handler from an async fn (or closure) taking the request and returning the
/// response; it cannot fail (answer errors with a status).
///
/// ```
/// use weft::server::{handler_fn, Body};
/// let handler = handler_fn(|_req: http::Request<hyper::body::Incoming>| async {
///     http::Response::new(Body::from("hello"))
/// });
/// # let _ = handler;
/// ```
pub fn handler_fn<F, Fut, B>(f: F) -> HandlerFn<F>
where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
{
    HandlerFn(f)
}

pin_project! {
    /// The future of a [`HandlerFn`]: the fn's future, its response as a `Result` that is
    /// never `Err` (its own type, not `map(Ok)`: no move of the whole future to take the
    /// function out when it ends).
    #[derive(Debug)]
    pub struct HandlerFuture<Fut> {
        #[pin]
        fut: Fut,
    }
}

impl<Fut: Future> Future for HandlerFuture<Fut> {
    type Output = Result<Fut::Output, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().fut.poll(cx).map(Ok)
    }
}

impl<F, Fut, B> tower_service::Service<http::Request<Incoming>> for HandlerFn<F>
where
    F: Fn(http::Request<Incoming>) -> Fut,
    Fut: Future<Output = http::Response<B>>,
{
    type Response = http::Response<B>;
    type Error = Infallible;
    type Future = HandlerFuture<Fut>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: http::Request<Incoming>) -> Self::Future {
        HandlerFuture { fut: (self.0)(req) }
    }
}

/// A tower service as hyper calls it: a clone per request, made ready, then called, with
/// the connection as the current one ([`ConnInfo::of`](super::ConnInfo::of)) while the
/// handler runs, and in the extensions of a request hyper can upgrade (the upgrade needs
/// it after the handler); the request counts as in progress (for the idle timeout) until
/// its response body is dropped.
pub(crate) struct HyperService<S> {
    pub(crate) service: S,
    pub(crate) ctx: Arc<ConnCtx>,
}

impl<S: Handler> hyper::service::Service<http::Request<Incoming>> for HyperService<S> {
    type Response = http::Response<ResponseBody<S::ResBody>>;
    type Error = BoxError;
    type Future = HandlerCall<S>;

    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        let busy = Busy::new(self.ctx.clone(), Some(req.version()));
        if req.extensions().get::<OnUpgrade>().is_some() {
            req.extensions_mut().insert(self.ctx.clone());
        }
        let mut service = self.service.clone();
        // Most services are ready at once (a `handler_fn` always is): then the handler's
        // future is made here, and the request future never changes state (a move of the
        // handler's future less). A service that is not gets polled again, with the task's
        // waker, by `HandlerCall::poll`.
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let _current = SetCurrent::new(self.ctx.clone());
        match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => HandlerCall::Calling {
                fut: service.call(req),
                busy: Some(busy),
            },
            Poll::Ready(Err(e)) => HandlerCall::Failed {
                error: Some(e.into()),
            },
            Poll::Pending => HandlerCall::Ready {
                service,
                req: Some(req),
                busy: Some(busy),
            },
        }
    }
}

pin_project! {
    /// The future of one request: the handler made ready, then its future, each poll with
    /// the request's connection as the current one.
    #[project = CallProj]
    pub(crate) enum HandlerCall<S: Handler> {
        Ready {
            service: S,
            req: Option<http::Request<Incoming>>,
            busy: Option<Busy>,
        },
        Calling {
            #[pin]
            fut: S::Future,
            busy: Option<Busy>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<S: Handler> Future for HandlerCall<S> {
    type Output = Result<http::Response<ResponseBody<S::ResBody>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                CallProj::Ready { service, req, busy } => {
                    let ready = match busy {
                        Some(b) => b.enter(|| service.poll_ready(cx)),
                        None => service.poll_ready(cx),
                    };
                    ready!(ready).map_err(Into::into)?;
                    let (Some(req), Some(mut busy)) = (req.take(), busy.take()) else {
                        return Poll::Ready(Err("a request future polled after its end".into()));
                    };
                    let fut = busy.enter(|| service.call(req));
                    self.set(HandlerCall::Calling {
                        fut,
                        busy: Some(busy),
                    });
                }
                CallProj::Calling { fut, busy } => {
                    let polled = match busy {
                        Some(b) => b.enter(|| fut.poll(cx)),
                        None => fut.poll(cx),
                    };
                    let response = ready!(polled).map_err(Into::into)?;
                    let busy = busy.take();
                    return Poll::Ready(Ok(response.map(|inner| ResponseBody { inner, busy })));
                }
                CallProj::Failed { error } => {
                    let error = error.take();
                    return Poll::Ready(Err(
                        error.unwrap_or_else(|| "a request future polled after its end".into())
                    ));
                }
            }
        }
    }
}

pin_project! {
    /// The handler's response body, holding its request's place among those in progress.
    pub(crate) struct ResponseBody<B> {
        #[pin]
        inner: B,
        busy: Option<Busy>,
    }
}

impl<B: HttpBody> HttpBody for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
