//! websockd end to end: messages in each mode, and the Close frame when the program exits.

mod common;
use common::*;
use weft::proto::{CloseCode, Message};

#[tokio::test]
async fn text_lines_echo_through_cat() {
    let d = Daemon::start(&["cat"]);
    let mut ws = d.connect("/").await;
    ws.send("hello").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "hello");
    ws.send("two\nlines").await.unwrap();
    assert_eq!(recv_text(&mut ws).await, "two");
    assert_eq!(recv_text(&mut ws).await, "lines");
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test]
async fn program_exit_closes_with_1000_and_the_last_line_without_newline_is_sent() {
    let d = Daemon::start(&["sh", "-c", "echo 1; echo 2; printf 3"]);
    let mut ws = d.connect("/").await;
    let (msgs, close) = recv_all(&mut ws).await;
    let texts: Vec<&[u8]> = msgs.iter().map(|m| &m.payload()[..]).collect();
    assert_eq!(texts, [&b"1"[..], b"2", b"3"]);
    assert_eq!(close, Some((CloseCode::NORMAL, "exit status 0".to_owned())));
}

#[tokio::test]
async fn failing_program_closes_with_1011_and_its_status() {
    let d = Daemon::start(&["sh", "-c", "echo bye; exit 3"]);
    let mut ws = d.connect("/").await;
    let (msgs, close) = recv_all(&mut ws).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        close,
        Some((CloseCode::INTERNAL_ERROR, "exit status 3".to_owned()))
    );
    let d = Daemon::start(&["sh", "-c", "kill -9 $$"]);
    let mut ws = d.connect("/").await;
    let (_, close) = recv_all(&mut ws).await;
    assert_eq!(
        close,
        Some((CloseCode::INTERNAL_ERROR, "killed by signal 9".to_owned()))
    );
}

#[tokio::test]
async fn crlf_and_invalid_utf8_lines() {
    let d = Daemon::start(&["sh", "-c", r"printf 'a\r\nb\377c\n'"]);
    let mut ws = d.connect("/").await;
    let (msgs, _) = recv_all(&mut ws).await;
    assert_eq!(&msgs[0].payload()[..], b"a");
    assert_eq!(
        std::str::from_utf8(msgs[1].payload()).unwrap(),
        "b\u{FFFD}c"
    );
}

#[tokio::test]
async fn binary_mode_passes_bytes_both_ways() {
    let d = Daemon::start(&["--binary", "cat"]);
    let mut ws = d.connect("/").await;
    let data: Vec<u8> = (0..=255u8).collect();
    ws.send(Message::Binary(data.clone().into())).await.unwrap();
    let mut got = Vec::new();
    while got.len() < data.len() {
        match tokio::time::timeout(PATIENCE, ws.recv()).await {
            Ok(Ok(Some(Message::Binary(b)))) => got.extend_from_slice(&b),
            other => panic!("expected binary, got {other:?}"),
        }
    }
    assert_eq!(got, data);
}

#[tokio::test]
async fn framed_mode_keeps_boundaries_and_kinds() {
    let d = Daemon::start(&["--framed", "cat"]);
    let mut ws = d.connect("/").await;
    ws.send("line\nwith newline").await.unwrap();
    ws.send(Message::Binary(vec![0u8, 1, 2, b'\n'].into()))
        .await
        .unwrap();
    ws.send("").await.unwrap();
    match recv_one(&mut ws).await {
        Message::Text(t) => assert_eq!(t.as_str(), "line\nwith newline"),
        m => panic!("{m:?}"),
    }
    match recv_one(&mut ws).await {
        Message::Binary(b) => assert_eq!(&b[..], [0, 1, 2, b'\n']),
        m => panic!("{m:?}"),
    }
    assert_eq!(recv_one(&mut ws).await, Message::Text("".into()));
}

#[tokio::test]
async fn framed_mode_refuses_a_bad_frame_from_the_program() {
    let d = Daemon::start(&["--framed", "sh", "-c", r"printf '\011\0\0\0\001x'; sleep 5"]);
    let mut ws = d.connect("/").await;
    let (msgs, close) = recv_all(&mut ws).await;
    assert!(msgs.is_empty());
    let (code, reason) = close.expect("a close frame");
    assert_eq!(code, CloseCode::INTERNAL_ERROR);
    assert!(reason.contains("kind 9"), "{reason}");
}

#[tokio::test]
async fn passstderr_tags_both_streams() {
    let d = Daemon::start(&["--passstderr", "sh", "-c", "echo out; echo 'e\"rr' >&2"]);
    let mut ws = d.connect("/").await;
    let (msgs, close) = recv_all(&mut ws).await;
    let texts: Vec<String> = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload()).into_owned())
        .collect();
    assert!(
        texts.contains(&r#"{"stream":"stdout","data":"out"}"#.to_owned()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&r#"{"stream":"stderr","data":"e\"rr"}"#.to_owned()),
        "{texts:?}"
    );
    assert_eq!(close.map(|c| c.0), Some(CloseCode::NORMAL));
}

#[tokio::test]
async fn stderr_is_logged_without_passstderr() {
    let d = Daemon::start(&["sh", "-c", "echo secret-stderr-line >&2; echo done"]);
    let mut ws = d.connect("/").await;
    let (msgs, _) = recv_all(&mut ws).await;
    assert_eq!(msgs.len(), 1, "stderr is not sent: {msgs:?}");
    let start = std::time::Instant::now();
    while !d.log_text().contains("STDERR: secret-stderr-line") {
        assert!(start.elapsed() < PATIENCE, "log:\n{}", d.log_text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test]
async fn maxframesize_closes_with_1009() {
    let d = Daemon::start(&["--maxframesize=1000", "cat"]);
    let mut ws = d.connect("/").await;
    ws.send("x".repeat(2000)).await.unwrap();
    let (_, close) = recv_all(&mut ws).await;
    assert_eq!(close.map(|c| c.0), Some(CloseCode::MESSAGE_TOO_BIG));
}

#[tokio::test]
async fn the_default_message_limit_is_one_mib() {
    let d = Daemon::start(&["cat"]);
    let mut ws = d.connect("/").await;
    // A frame that announces 1 MiB + 1 and brings only its first bytes: refused at the
    // header (the whole megabyte would race the server's close and meet a reset).
    let conn = ws.connection_mut();
    conn.begin_message(weft::proto::MessageKind::Text).unwrap();
    conn.begin_frame((1 << 20) + 1, true).unwrap();
    conn.send_frame_data(bytes::Bytes::from_static(b"yyyy"))
        .unwrap();
    let _ = ws.flush().await;
    let (_, close) = recv_all(&mut ws).await;
    assert_eq!(close.map(|c| c.0), Some(CloseCode::MESSAGE_TOO_BIG));
    // Exactly 1 MiB passes.
    let mut ws = d.connect("/").await;
    ws.send("y".repeat(1 << 20)).await.unwrap();
    assert_eq!(recv_text(&mut ws).await.len(), 1 << 20);
}

#[tokio::test]
async fn a_long_line_goes_in_pieces_of_the_limit() {
    let d = Daemon::start(&[
        "--maxframesize=1000",
        "sh",
        "-c",
        "head -c 2500 /dev/zero | tr '\\0' a",
    ]);
    let mut ws = d.connect("/").await;
    let (msgs, _) = recv_all(&mut ws).await;
    let lens: Vec<usize> = msgs.iter().map(|m| m.payload().len()).collect();
    assert_eq!(lens, [1000, 1000, 500]);
}

async fn recv_one(ws: &mut Client) -> Message {
    match tokio::time::timeout(PATIENCE, ws.recv()).await {
        Ok(Ok(Some(m))) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}
