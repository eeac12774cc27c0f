//! fastwebsockets' echo server, as its `examples/echo_server.rs` does it: hyper's HTTP/1
//! server with upgrades, `fastwebsockets::upgrade::upgrade`, a `FragmentCollector` (whole
//! messages, UTF-8 checked), `read_frame` / `write_frame` (each write goes out at once,
//! vectored above 1 KiB: the library has no corking), the task `unconstrained`.

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use servers::{serve, MAX_MESSAGE};

fn main() {
    serve("echo-fastwebsockets", |stream, _| async move {
        let io = hyper_util::rt::TokioIo::new(stream);
        http1::Builder::new()
            .serve_connection(io, service_fn(server_upgrade))
            .with_upgrades()
            .await
    });
}

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_max_message_size(MAX_MESSAGE);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        // Errors are the load generator hanging up.
        let _ = tokio::task::unconstrained(handle_client(fut)).await;
    });
    Ok(response)
}
