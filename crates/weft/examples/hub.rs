//! An echo server on `weft::uring::Hub` (Linux): one thread whose io_uring ring owns the
//! connections; each message comes back from the `message` callback, and a client that
//! sends `stats` gets how many connections are open. On `/chat` a message goes instead to
//! every other client on `/chat` (`Ctx::send_to`). Where io_uring is missing or forbidden
//! it says so and exits 1 (the tokio `echo-server` example serves anywhere).
//!
//! ```text
//! cargo run --release -p weft --example hub -- --addr 127.0.0.1:9002
//! ```
//! Flags: `--addr HOST:PORT` (default 127.0.0.1:9002), `--deflate` (accept
//! permessage-deflate), `--probe` (only say whether io_uring works here: exit 0, or print
//! why not and exit 3; for scripts).

#[cfg(all(feature = "uring", target_os = "linux"))]
mod hub {
    use weft::uring::{App, ConnId, Ctx, Hub};
    use weft::{Accept, CloseCode, Message, Options, Reject, Request};

    /// The application: how many connections are open, and who is on `/chat`.
    struct Echo {
        open: usize,
        chat: Vec<ConnId>,
    }

    impl App for Echo {
        /// On `/chat`.
        type State = bool;

        fn open(&mut self, request: &Request) -> Result<(Accept, bool), Reject> {
            self.open += 1;
            Ok((Accept::new(), request.resource() == "/chat"))
        }

        fn opened(&mut self, chat: &mut bool, ctx: &mut Ctx<'_>) {
            if *chat {
                self.chat.push(ctx.id());
            }
        }

        fn message(&mut self, chat: &mut bool, message: Message, ctx: &mut Ctx<'_>) {
            if *chat {
                let me = ctx.id();
                for &to in self.chat.iter().filter(|&&to| to != me) {
                    ctx.send_to(to, message.clone());
                }
                return;
            }
            let reply = match &message {
                Message::Text(t) if t.as_str() == "stats" => {
                    Message::from(format!("{} connection(s) open", self.open))
                }
                _ => message,
            };
            // Fails only once the connection is closing: nothing to answer then.
            let _ = ctx.send(reply);
        }

        fn closed(&mut self, id: ConnId, _: bool, _: CloseCode) {
            self.open -= 1;
            self.chat.retain(|&member| member != id);
        }
    }

    pub fn main() -> Result<(), String> {
        let mut addr = "127.0.0.1:9002".to_string();
        let mut options = Options::default();
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "--addr" => addr = args.next().ok_or("--addr HOST:PORT")?,
                "--deflate" => options.deflate = Some(Default::default()),
                "--probe" => match weft::uring::probe() {
                    Ok(()) => std::process::exit(0),
                    Err(e) => {
                        println!("io_uring unavailable here: {e}");
                        std::process::exit(3);
                    }
                },
                other => return Err(format!("unknown flag {other}")),
            }
        }
        weft::uring::probe().map_err(|e| format!("io_uring unavailable here: {e}"))?;
        let listener = std::net::TcpListener::bind(&addr).map_err(|e| format!("{addr}: {e}"))?;
        let hub = Hub::new(listener)
            .map_err(|e| e.to_string())?
            .options(options);
        eprintln!("hub listening on ws://{addr}/ (one thread, one io_uring ring)");
        hub.run(Echo {
            open: 0,
            chat: Vec::new(),
        })
        .map_err(|e| format!("io_uring: {e}"))
    }
}

fn main() {
    #[cfg(all(feature = "uring", target_os = "linux"))]
    let result = hub::main();
    #[cfg(not(all(feature = "uring", target_os = "linux")))]
    let result: Result<(), String> = {
        println!("io_uring unavailable here: the hub needs Linux and weft's `uring` feature");
        std::process::exit(3)
    };
    if let Err(e) = result {
        eprintln!("hub: {e}");
        std::process::exit(1);
    }
}
