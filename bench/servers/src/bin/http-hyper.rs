//! Bare hyper 1.x: the baseline of the HTTP requests/s benchmark, no WebSocket. As hyper's
//! own `hello` example writes a server, the fastest plain way: `hyper::server::conn::http1::Builder`
//! per connection (keep-alive on, hyper's defaults otherwise), `service_fn`, a `Full<Bytes>`
//! of a static `ok` (hyper writes `content-length: 2` and `date`). `GET /` answers 200
//! `ok` with no other header (axum adds `content-type: text/plain; charset=utf-8`); any
//! other method or path 404. Same runtime, listener and flags as the echo servers.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use servers::serve;
use std::convert::Infallible;

fn main() {
    serve("http-hyper", |stream, _| {
        let io = hyper_util::rt::TokioIo::new(stream);
        http1::Builder::new().serve_connection(io, service_fn(hello))
    });
}

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
    if req.method() != Method::GET || req.uri().path() != "/" {
        *res.body_mut() = Full::new(Bytes::new());
        *res.status_mut() = StatusCode::NOT_FOUND;
    }
    Ok(res)
}
