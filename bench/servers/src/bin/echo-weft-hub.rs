//! weft's io_uring hub (`weft::uring::Hub`): one thread, one ring that owns the
//! connections, the engines in the hub's table and the echo an `App` callback (`message`
//! queues the message back; the hub sends everything queued in one turn with the ring's
//! next submission). No tokio runtime, task or stream per connection. 64 MiB messages and
//! frames, as the other weft servers here; the listener as the floors' (backlog 1024).
//! Where io_uring is missing or forbidden it says so in one line and exits 3, as
//! floor-uring does.

use servers::{prepare, spawn_heap_reporter, MAX_MESSAGE};
use weft::proto::Message;
use weft::uring::{App, Ctx, Hub};
use weft::{Accept, Options, Reject, Request};

#[path = "../floor.rs"]
#[allow(dead_code)]
mod floor;

struct Echo;

impl App for Echo {
    type State = ();

    fn open(&mut self, _: &Request) -> Result<(Accept, ()), Reject> {
        Ok((Accept::new(), ()))
    }

    fn message(&mut self, _: &mut (), message: Message, ctx: &mut Ctx<'_>) {
        // Fails only once the connection is closing: nothing to echo then.
        let _ = ctx.send(message);
    }
}

fn main() {
    let args = prepare("echo-weft-hub");
    if let Err(e) = weft::uring::probe() {
        println!("io_uring_setup failed: {e}");
        std::process::exit(3);
    }
    if let Some(path) = args.heap_file.clone() {
        if let Err(e) = spawn_heap_reporter(path) {
            eprintln!("echo-weft-hub: heap reporter: {e}");
        }
    }
    let mut options = Options::default();
    options.config.max_message_size = Some(MAX_MESSAGE as u64);
    options.config.max_frame_size = Some(MAX_MESSAGE as u64);
    let run = floor::listen(args.addr).and_then(|listener| {
        eprintln!("echo-weft-hub listening on {}", listener.local_addr()?);
        Hub::new(listener)?.options(options).run(Echo)
    });
    if let Err(e) = run {
        eprintln!("echo-weft-hub: {e}");
        std::process::exit(1);
    }
}
