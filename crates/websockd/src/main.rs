//! websockd: serves a program's stdin/stdout over WebSockets, one process per connection.
//!
//! Not built yet (it depends on the `weft` drivers). Today the binary only says so, and exits
//! with status 2 so that nothing mistakes it for a working daemon.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "websockd {}: not implemented yet; see crates/weft/examples/echo-server.rs for a working server",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
