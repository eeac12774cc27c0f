//! `httpload`'s HTTP/1.1 side: the request it pipelines, and a streaming parser that checks
//! every response (status line, headers, Content-Length, the body byte for byte). No HTTP
//! library is used.
//!
//! A response passes only if it is `HTTP/1.1` with the expected status, has exactly one
//! Content-Length value (repeats must agree) equal to the expected body's length, no
//! Transfer-Encoding, no `Connection: close` (the connection must stay open), well-formed
//! header lines, a head under 16 KiB, and the expected body; and only if a request is
//! outstanding for it.

/// The largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// A keep-alive `GET` of `path` (HTTP/1.1 keeps the connection open by default).
pub fn request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// What every response must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a head; `scanned`: how far the search for its end got.
    Head { scanned: usize },
    /// Inside the body: how much of it arrived.
    Body { off: usize },
}

/// What one call to [`Parser::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub consumed: usize,
    /// A whole response was received and checked (the caller pops its request).
    pub completed: bool,
}

/// The streaming parser of one connection's responses.
pub struct Parser {
    expect: Expect,
    state: State,
}

const VERSION: &[u8] = b"HTTP/1.1 ";

impl Parser {
    pub fn new(expect: Expect) -> Parser {
        Parser {
            expect,
            state: State::Head { scanned: 0 },
        }
    }

    /// Parses from `data` up to the end of one response. `outstanding`: a request is waiting
    /// for it. `consumed == 0` and not `completed`: the head is cut short; call again with
    /// the same bytes and more (a head is parsed whole, so the caller keeps unconsumed bytes
    /// at the front of its buffer).
    pub fn feed(&mut self, data: &[u8], outstanding: bool) -> Result<Progress, String> {
        let mut off = 0;
        loop {
            match self.state {
                State::Head { scanned } => {
                    let d = &data[off..];
                    if d.is_empty() {
                        return Ok(Progress {
                            consumed: off,
                            completed: false,
                        });
                    }
                    if !outstanding {
                        return Err("a response arrived that was never asked for".into());
                    }
                    // Fail early on bytes that cannot start a response.
                    let n = d.len().min(VERSION.len());
                    if d[..n] != VERSION[..n] {
                        return Err(format!(
                            "response does not start with \"HTTP/1.1 \": {:?}",
                            String::from_utf8_lossy(&d[..d.len().min(40)])
                        ));
                    }
                    let from = scanned.saturating_sub(3);
                    let Some(end) = d[from..]
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|p| from + p)
                    else {
                        if d.len() > MAX_HEAD {
                            return Err(format!("response head over {MAX_HEAD} bytes"));
                        }
                        self.state = State::Head { scanned: d.len() };
                        return Ok(Progress {
                            consumed: off,
                            completed: false,
                        });
                    };
                    if end + 4 > MAX_HEAD {
                        return Err(format!("response head over {MAX_HEAD} bytes"));
                    }
                    check_head(&d[..end], &self.expect)?;
                    off += end + 4;
                    self.state = State::Body { off: 0 };
                }
                State::Body { off: got } => {
                    let want = &self.expect.body[got..];
                    let take = want.len().min(data.len() - off);
                    let chunk = &data[off..off + take];
                    if let Some(p) = chunk.iter().zip(want).position(|(a, b)| a != b) {
                        return Err(format!(
                            "body differs at byte {}: got {:?}, expected {:?}",
                            got + p,
                            chunk[p] as char,
                            want[p] as char
                        ));
                    }
                    off += take;
                    if take < want.len() {
                        self.state = State::Body { off: got + take };
                        return Ok(Progress {
                            consumed: off,
                            completed: false,
                        });
                    }
                    self.state = State::Head { scanned: 0 };
                    return Ok(Progress {
                        consumed: off,
                        completed: true,
                    });
                }
            }
        }
    }
}

/// Checks a response head (without its final CRLF CRLF) against `expect`.
fn check_head(head: &[u8], expect: &Expect) -> Result<(), String> {
    let head = std::str::from_utf8(head).map_err(|_| "response head not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    // "HTTP/1.1 " (checked by the caller), three digits, then the end or a space and a reason.
    let rest = &status_line[VERSION.len().min(status_line.len())..];
    let code = rest
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
    let well_formed = code.is_some() && (rest.len() == 3 || rest.as_bytes()[3] == b' ');
    if !well_formed {
        return Err(format!("bad status line {status_line:?}"));
    }
    let code: u16 = code.expect("checked").parse().expect("three digits");
    if code != expect.status {
        return Err(format!(
            "status {code} ({status_line:?}), expected {}",
            expect.status
        ));
    }
    let mut length: Option<usize> = None;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Err(format!("folded header line {line:?}"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("header line without a colon: {line:?}"));
        };
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("bad header name {name:?}"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            // A list ("2, 2") is allowed by RFC 9110 when every value agrees.
            for v in value.split(',') {
                let v = v.trim_matches([' ', '\t']);
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 18 {
                    return Err(format!("bad Content-Length {value:?}"));
                }
                let n: usize = v.parse().expect("digits");
                if length.is_some_and(|l| l != n) {
                    return Err(format!("Content-Length values differ: {value:?}"));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "Transfer-Encoding {value:?}: expected a Content-Length body"
            ));
        } else if name.eq_ignore_ascii_case("connection")
            && value
                .split(',')
                .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case("close"))
        {
            return Err("the server closes the connection (Connection: close)".into());
        }
    }
    match length {
        None => Err("no Content-Length".into()),
        Some(n) if n != expect.body.len() => Err(format!(
            "Content-Length {n}, expected {}",
            expect.body.len()
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Expect {
        Expect {
            status: 200,
            body: b"ok".to_vec(),
        }
    }

    /// hyper's answer (a date header, Content-Length), and axum's (a content type too).
    const HYPER: &str =
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: Tue, 02 Dec 2025 00:00:00 GMT\r\n\r\nok";
    const AXUM: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n\
                        content-length: 2\r\ndate: Tue, 02 Dec 2025 00:00:00 GMT\r\n\r\nok";

    /// Feeds `wire` in pieces of `piece` bytes (keeping unconsumed bytes at the front, as
    /// the load generator does), with `outstanding` requests, and returns how many
    /// responses completed.
    fn run(wire: &[u8], piece: usize, outstanding: usize) -> Result<usize, String> {
        let mut p = Parser::new(ok());
        let mut buf = Vec::new();
        let mut done = 0;
        for chunk in wire.chunks(piece) {
            buf.extend_from_slice(chunk);
            let mut off = 0;
            loop {
                let pr = p.feed(&buf[off..], done < outstanding)?;
                off += pr.consumed;
                if pr.completed {
                    done += 1;
                } else if pr.consumed == 0 || off == buf.len() {
                    break;
                }
            }
            buf.drain(..off);
        }
        Ok(done)
    }

    /// Splits `wire` in two at every byte (and feeds the second part in one piece).
    fn run_split_at_every_byte(wire: &[u8], outstanding: usize) -> Result<usize, String> {
        let mut last = Ok(0);
        for cut in 0..=wire.len() {
            let mut p = Parser::new(ok());
            let mut buf = Vec::new();
            let mut done = 0;
            for part in [&wire[..cut], &wire[cut..]] {
                buf.extend_from_slice(part);
                let mut off = 0;
                loop {
                    let pr = p.feed(&buf[off..], done < outstanding)?;
                    off += pr.consumed;
                    if pr.completed {
                        done += 1;
                    } else if pr.consumed == 0 || off == buf.len() {
                        break;
                    }
                }
                buf.drain(..off);
            }
            if let Ok(n) = last {
                if cut > 0 && n != done {
                    return Err(format!("cut at {cut}: {done} responses, before {n}"));
                }
            }
            last = Ok(done);
        }
        last
    }

    #[test]
    fn good_responses_pass_in_any_split() {
        for one in [HYPER, AXUM, "HTTP/1.1 200\r\nContent-Length:2\r\n\r\nok"] {
            let wire: Vec<u8> = one.repeat(3).into_bytes();
            for piece in [1, 2, 7, 40, wire.len()] {
                assert_eq!(run(&wire, piece, 3), Ok(3), "{one:?} piece {piece}");
            }
            assert_eq!(run_split_at_every_byte(&wire, 3), Ok(3), "{one:?}");
        }
    }

    #[test]
    fn a_partial_response_waits() {
        let mut p = Parser::new(ok());
        let cut = HYPER.len() - 1;
        // The whole head and one body byte: the head is consumed, the body waits.
        let pr = p.feed(&HYPER.as_bytes()[..cut], true).unwrap();
        assert_eq!(
            pr,
            Progress {
                consumed: cut,
                completed: false
            }
        );
        let pr = p.feed(b"k", true).unwrap();
        assert_eq!(
            pr,
            Progress {
                consumed: 1,
                completed: true
            }
        );
        // A head cut short consumes nothing.
        let mut p = Parser::new(ok());
        let pr = p.feed(&HYPER.as_bytes()[..20], true).unwrap();
        assert_eq!(pr.consumed, 0);
        assert!(!pr.completed);
        assert!(p.feed(HYPER.as_bytes(), true).unwrap().completed);
    }

    #[test]
    fn a_bad_status_fails() {
        for bad in [
            "HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 101 Switching Protocols\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 20 OK\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 2x0 OK\r\ncontent-length: 2\r\n\r\nok",
            "http/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            "garbage",
        ] {
            for piece in [1, 5, bad.len()] {
                assert!(
                    run(bad.as_bytes(), piece, 1).is_err(),
                    "{bad:?} piece {piece}"
                );
            }
        }
        assert!(run(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nok",
            100,
            1
        )
        .unwrap_err()
        .contains("status 404"));
        // A wrong first byte fails at once, before any head is complete.
        assert!(Parser::new(ok()).feed(b"X", true).is_err());
    }

    #[test]
    fn a_wrong_length_or_body_fails() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nokk",
                "Content-Length 3",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\no",
                "Content-Length 1",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                "Content-Length 0",
            ),
            ("HTTP/1.1 200 OK\r\n\r\nok", "no Content-Length"),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\nok",
                "bad Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\nok",
                "bad Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length:\r\n\r\nok",
                "bad Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
                "differ",
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                "Transfer-Encoding",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno",
                "body differs at byte 0",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\noK",
                "body differs at byte 1",
            ),
            (
                "HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ncontent-length: 2\r\n\r\nok",
                "Connection: close",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length 2\r\n\r\nok",
                "without a colon",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n folded\r\n\r\nok",
                "folded",
            ),
            (
                "HTTP/1.1 200 OK\r\nbad name: 1\r\ncontent-length: 2\r\n\r\nok",
                "header name",
            ),
        ];
        for (bad, why) in cases {
            for piece in [1, 3, bad.len()] {
                let e = run(bad.as_bytes(), piece, 1).unwrap_err();
                assert!(e.contains(why), "{bad:?} piece {piece}: {e}");
            }
        }
        // Agreeing repeats and a list of equal values are one length.
        for good in [
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length:  2 \r\n\r\nok",
        ] {
            assert_eq!(run(good.as_bytes(), 1, 1), Ok(1), "{good:?}");
        }
    }

    #[test]
    fn a_longer_body_runs_into_the_next_response() {
        // Content-Length 2 but three bytes sent: the third is not a response's start.
        let wire = format!(
            "{}{}",
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokk", HYPER
        );
        assert!(run(wire.as_bytes(), 1, 2)
            .unwrap_err()
            .contains("does not start"));
    }

    #[test]
    fn an_unrequested_response_fails() {
        let wire = HYPER.repeat(2);
        assert!(run(wire.as_bytes(), 1000, 1)
            .unwrap_err()
            .contains("never asked for"));
        assert!(run(HYPER.as_bytes(), 1, 0).is_err());
    }

    #[test]
    fn an_oversized_head_fails() {
        let mut big = String::from("HTTP/1.1 200 OK\r\n");
        while big.len() <= MAX_HEAD {
            big.push_str("x-filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        // Without the end of the head, and with it.
        assert!(run(big.as_bytes(), 1000, 1).unwrap_err().contains("over"));
        big.push_str("content-length: 2\r\n\r\nok");
        assert!(run(big.as_bytes(), big.len(), 1)
            .unwrap_err()
            .contains("over"));
    }

    #[test]
    fn the_request_is_a_keep_alive_get() {
        assert_eq!(
            request("127.0.0.1:9001", "/"),
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\r\n"
        );
    }
}
