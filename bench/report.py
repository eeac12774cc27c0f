#!/usr/bin/env python3
"""Turns bench/results/*.jsonl into bench/RESULTS.md (markdown on stdout).

usage: report.py RESULTS_DIR CARGO_LOCK
"""
import json
import os
import re
import statistics
import sys

# weft-uring: echo-weft-server --model uring --threads 1 (weft's io_uring driver under tokio);
# weft-hub: echo-weft-hub (weft::uring::Hub, the io_uring server that owns its connections).
# Neither is a peer.
LIBS = ["weft", "weft-uring", "weft-hub", "tungstenite", "fastwebsockets", "tokio-websockets"]
URING_LIBS = ["weft-uring", "weft-hub"]
PEERS = ["tungstenite", "fastwebsockets", "tokio-websockets"]
# The codec part measures the libraries' frame codecs: one weft.
CODEC_LIBS = ["weft"] + PEERS
# The floor servers (bench/servers/src/bin/floor-*.rs): not peers; each library is read
# against the floor of its I/O model (every library here runs on tokio, i.e. epoll).
# engine-uring (floor-uring --engine: weft's engine in the floor's io_uring loop, no tasks;
# only when asked for with --servers) is listed with them: not a peer either.
FLOORS = ["floor-epoll", "floor-uring", "floor-uring-ms", "floor-uring-msf", "engine-uring"]
FLOOR_OF = {**{l: "floor-epoll" for l in LIBS}, "weft-uring": "floor-uring", "weft-hub": "floor-uring",
            "engine-uring": "floor-uring", "floor-uring": "floor-epoll",
            "floor-uring-ms": "floor-epoll", "floor-uring-msf": "floor-epoll"}
# System calls by class (the syscall pass: strace, per echo).
SENDS = ["send", "sendto", "sendmsg", "sendmmsg", "write", "writev", "pwritev", "pwritev2"]
RECVS = ["recv", "recvfrom", "recvmsg", "recvmmsg", "read", "readv", "preadv", "preadv2"]
WAITS = ["epoll_wait", "epoll_pwait", "epoll_pwait2", "io_uring_enter", "poll", "ppoll",
         "select", "pselect6"]
VERSIONED = ["tokio-tungstenite", "tungstenite", "fastwebsockets", "tokio-websockets",
             "hyper", "hyper-util", "tokio", "mio", "bytes", "simdutf8", "yawc", "flate2",
             "zlib-rs", "axum"]
# The permessage-deflate servers (bench/run's DEFLATE_SERVERS) and the reference without
# compression.
DEFLATE_LIBS = ["weft", "yawc", "ratchet"]
DEFLATE_OFF = "weft/off"
# The server-stacks part (bench/run --only server), by binary: the echo through each stack
# against echo-weft (weft's direct accept), plain HTTP against bare hyper.
SERVER_ECHO = ["echo-weft", "echo-weft-server", "echo-axum", "echo-fastwebsockets"]
SERVER_HTTP = ["http-hyper", "echo-axum", "echo-weft-server"]
# The daemon part (bench/run --only daemon): websockd against websocketd.
DAEMONS = ["websockd", "websocketd"]


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def meta(res, part):
    p = os.path.join(res, part + ".meta.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def versions(lock, names=None):
    out = {}
    text = open(lock).read() if os.path.exists(lock) else ""
    for m in re.finditer(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', text):
        if m.group(1) in (names or VERSIONED):
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def fmt(x, digits=2):
    if x is None:
        return "-"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.{digits}f} M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.0f} k"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def meta_line(m):
    if not m:
        return ""
    s = f"_{m['date']}, {m['mode']} run"
    if m["part"] in ("matrix", "deflate", "server", "daemon"):
        s += f", {m['repeats']} repeat(s) of {m['duration']} s after {m['warmup']} s warm-up"
    s += f"; weft at {m['weft_commit']}{' + uncommitted changes' if m['weft_dirty'] else ''}"
    s += f"; load average at start {m['loadavg_start']}_"
    return s


def noise_cpu(r):
    """CPU seconds the rest of the machine used during a run's window."""
    if "noise_cpu_s" in r:
        return r["noise_cpu_s"] or 0.0
    # Rows from a loadgen that reported interrupt time apart from other_cpu_s.
    return (r.get("other_cpu_s") or 0.0) + (r.get("irq_cpu_s") or 0.0)


def ratio_table(title, head, cols, peers, keys, by, metric, cell_name, field, higher_better,
                digits, note=None, subject="weft", ratio_head="weft / best peer"):
    """One table of an echo matrix: a row per cell, a column per library with its ratio to
    the best of `peers` (one peer: the reference), `subject`'s ratio in bold, and the other
    processes' CPU. Returns the lines and the subject's (ratio, cell) pairs."""
    t = [f"### {title}", ""]
    if note:
        t += [note, ""]
    t += [f"| {head} | " + " | ".join(cols) + f" | {ratio_head} | other procs, cores |",
          "|---|" + "---:|" * (len(cols) + 2)]
    ratios = []
    for k in keys:
        vals = {l: metric(k, l, field) for l in cols}
        pv = [vals[l] for l in peers if vals[l] is not None]
        best = (max(pv) if higher_better else min(pv)) if pv else None
        cells = []
        for l in cols:
            v = vals[l]
            if v is None:
                cells.append("-")
            elif best:
                cells.append(f"{fmt(v, digits)} ({v / best:.2f})")
            else:
                cells.append(fmt(v, digits))
        w = vals.get(subject)
        r = (w / best) if (w is not None and best) else None
        if r is not None:
            ratios.append((r, k))
        noise = med([max(0.0, noise_cpu(x)) / x["secs"]
                     for runs in by[k].values() for x in runs if x.get("secs")])
        row = f"| {cell_name(k)} | " + " | ".join(cells)
        row += f" | **{r:.2f}**" if r is not None else " | -"
        row += f" | {noise:.2f} |" if noise is not None else " | - |"
        t.append(row)
    t.append("")
    return t, ratios


def syscall_table(rows, m, cell_name):
    """Syscalls per echo, server x cell, from the syscall pass (results/syscalls.jsonl)."""
    out = ["### System calls per echo (strace, a separate pass)", ""]
    if m:
        out += [meta_line(m).replace(" run,", " run,", 1), ""]
    out += [
        "Each server fresh, `strace -f -ttt` attached to it for a short run of its own after "
        "the timed matrix (never during it); the calls whose entry falls inside the load "
        "generator's measured window, divided by the echoes it verified in that window. "
        "_send_: send, sendto, sendmsg, write, writev; _recv_: recv, recvfrom, recvmsg, "
        "read, readv; _wait_: epoll_wait (and variants), io_uring_enter; _other_: the rest "
        "(accept, epoll_ctl, close, futex, ...). Under io_uring the sends and receives are "
        "operations in the ring, not system calls: only io_uring_enter counts. strace "
        "slows every server several times over, so the waits per echo (how many events one "
        "wait returns) read lower than at full speed; sends and receives per echo hold.",
        "",
    ]
    if m and m.get("notes"):
        out += [f"_{m['notes']}_", ""]
    by = {}
    errors = []
    for r in rows:
        key = (r["kind"], r["conns"], r["size"], r["inflight"])
        if r.get("errors") or not r.get("echoes"):
            errors.append(r)
            continue
        by.setdefault(key, {})[r["server"]] = r
    keys = sorted(by, key=lambda k: (k[0] != "binary", k[1], k[2], k[3]))
    present = [l for l in LIBS + FLOORS if any(l in by[k] for k in keys)]
    out += ["| conns x size x in flight | " + " | ".join(f"{l}: send / recv / wait / other" for l in present) + " |",
            "|---|" + "---:|" * len(present)]

    def per(r, names):
        return sum(v for k, v in r["syscalls"].items() if k in names) / r["echoes"]

    for k in keys:
        cells = []
        for l in present:
            r = by[k].get(l)
            if not r:
                cells.append("-")
                continue
            other = sum(v for n, v in r["syscalls"].items()
                        if n not in SENDS + RECVS + WAITS) / r["echoes"]
            cells.append(f"{per(r, SENDS):.2f} / {per(r, RECVS):.2f} / {per(r, WAITS):.3f} / {other:.3f}")
        out.append(f"| {cell_name(k)} | " + " | ".join(cells) + " |")
    out.append("")
    names = {}
    for k in keys:
        for l, r in by[k].items():
            for n in r["syscalls"]:
                if n in SENDS + RECVS + WAITS:
                    names.setdefault(l, set()).add(n)
    out += ["Which calls: " + "; ".join(f"{l}: {', '.join(sorted(names[l]))}" for l in present if l in names) + ".", ""]
    for e in errors:
        out.append(f"- {e['server']} {cell_name((e['kind'], e['conns'], e['size'], e['inflight']))}: "
                   f"{e.get('first_error') or 'no echo in the window'}")
    if errors:
        out.append("")
    return out


def floor_table(by, keys, present, metric, cell_name):
    """Server CPU per echo against the floor of each server's I/O model."""
    out = ["### Server CPU per echo against the floor of its I/O model", "",
           "Each server's CPU per echo divided by its floor's in the same run: the tokio "
           "servers (weft and its peers) against floor-epoll, weft-uring and weft-hub against floor-uring, "
           "floor-uring against floor-epoll. 1.00 is the least an echo can cost over that I/O model (parse, "
           "unmask, send back: no validation, no allocation). _best peer_: the lowest peer's.",
           ""]
    libs = [l for l in present if l != "floor-epoll"]
    out += ["| conns x size x in flight | floor-epoll, µs | " + " | ".join(libs) + " | best peer |",
            "|---|---:|" + "---:|" * (len(libs) + 1)]
    ratios = []
    uring_ratios = {l: [] for l in URING_LIBS}
    peers = [l for l in present if l in PEERS]
    for k in keys:
        fe = metric(k, "floor-epoll", "server_cpu_us_per_echo")
        cells = []
        for l in libs:
            v = metric(k, l, "server_cpu_us_per_echo")
            f = metric(k, FLOOR_OF.get(l, "floor-epoll"), "server_cpu_us_per_echo")
            if v is None or not f:
                cells.append("-")
                continue
            r = v / f
            if l == "weft":
                ratios.append((r, k))
                cells.append(f"**{r:.2f}**")
            elif l in URING_LIBS:
                uring_ratios[l].append((r, k))
                cells.append(f"**{r:.2f}**")
            else:
                cells.append(f"{r:.2f}")
        pv = [metric(k, l, "server_cpu_us_per_echo") for l in peers]
        pv = [x for x in pv if x is not None]
        best = f"{min(pv) / fe:.2f}" if (pv and fe) else "-"
        out.append(f"| {cell_name(k)} | {fmt(fe, 2)} | " + " | ".join(cells) + f" | {best} |")
    out.append("")
    return out, (ratios, uring_ratios)


def matrix_section(rows, m, srows=None, sm=None):
    out = ["## Echo matrix", "", meta_line(m), ""]
    if m and m.get("notes"):
        out += [f"_{m['notes']}_", ""]
    out += [
        "Each server single-threaded (current-thread tokio runtime; the floors: one thread "
        "on mio or on one io_uring ring) on CPU 0, the load "
        "generator on CPU 1. Median over repeats. _CPU µs/echo_ is the server's utime+stime "
        "(/proc/PID/stat) over the measured window divided by the echoes in it. In each cell "
        "the number in parentheses is the ratio to the best peer (for msgs/s higher is "
        "better, for CPU lower is better); then weft's ratio in bold. _other procs_ is the CPU that "
        "the rest of the machine used during the window (all busy CPU time in /proc/stat less "
        "the server's and the load generator's), in cores, median over the cell's runs: about "
        "0 on a quiet machine, above ~0.1 the cell is noisy (the load generator is on the "
        "other core, so noise slows both sides). The load generator is close to a full core "
        "in the fastest cells (16 B x 8 in flight at 64/512 connections): there msgs/s may be "
        "its limit, while CPU per echo stays the server's own number. floor-epoll and "
        "floor-uring (bench/servers/src/bin/floor-*.rs) are not peers: no best-peer ratio "
        "counts them; they show the least an echo costs over each I/O model.",
        "",
    ]
    by = {}
    errors = []
    for r in rows:
        key = (r["kind"], r["conns"], r["size"], r["inflight"])
        by.setdefault(key, {}).setdefault(r["server"], []).append(r)
        if r.get("errors"):
            errors.append(r)
    keys = sorted(by, key=lambda k: (k[0] != "binary", k[1], k[2], k[3]))
    present = [l for l in LIBS + FLOORS if any(l in by[k] for k in keys)]
    peers = [l for l in present if l in PEERS]

    def metric(k, lib, field):
        runs = [x for x in by[k].get(lib, []) if not x.get("errors")]
        return med([x.get(field) for x in runs])

    def cell_name(k):
        kind, c, s, f = k
        size = {16: "16 B", 1024: "1 KiB", 65536: "64 KiB"}.get(s, f"{s} B")
        return f"{c} x {size} x {f}" + (" text" if kind == "text" else "")

    def table(title, field, higher_better, digits):
        return ratio_table(title, "conns x size x in flight", present, peers, keys, by, metric,
                           cell_name, field, higher_better, digits)

    t, msg_ratios = table("Throughput, echoes/s", "msgs_per_sec", True, 1)
    out += t
    t, cpu_ratios = table("Server CPU per echo, µs", "server_cpu_us_per_echo", False, 2)
    out += t
    # weft's io_uring drivers against the best peer, per cell.
    uring_cpu = {l: [] for l in URING_LIBS}
    for lib in URING_LIBS:
        if lib not in present:
            continue
        for k in keys:
            u = metric(k, lib, "server_cpu_us_per_echo")
            pv = [metric(k, l, "server_cpu_us_per_echo") for l in peers]
            pv = [x for x in pv if x is not None]
            if u is not None and pv:
                uring_cpu[lib].append((u / min(pv), k))
    floor_ratios = ([], {l: [] for l in URING_LIBS})
    if "floor-epoll" in present:
        t, floor_ratios = floor_table(by, keys, present, metric, cell_name)
        out += t
    if srows:
        out += syscall_table(srows, sm, cell_name)
    t, _ = table("p99 latency, µs (load generator's view)", "p99_us", False, 0)
    out += t
    if errors:
        out += ["### Runs with errors", ""]
        for e in errors:
            out.append(f"- {e['server']} {cell_name((e['kind'], e['conns'], e['size'], e['inflight']))} "
                       f"repeat {e.get('repeat')}: {e.get('first_error')}")
        out.append("")
    return out, msg_ratios, (cpu_ratios, uring_cpu), cell_name, floor_ratios


def codec_section(rows, m):
    out = ["## Codec (in memory, no syscalls)", "", meta_line(m), ""]
    out += [
        "Decode: masked client frames read whole by a server endpoint from an in-memory "
        "stream (at most 64 KiB per read); encode: server frames written into an in-memory "
        "stream that copies into one reused 64 KiB buffer. Best of several runs, one core. "
        "GB/s counts wire bytes. memcpy copies the same bytes in the same 64 KiB pieces into "
        "one 64 KiB buffer; memcpy into messages (decode) copies each message's payload into "
        "a buffer of the message's size, which any decoder that hands out a contiguous "
        "message must do (for 1 MiB messages that buffer no longer stays in L2). "
        "In parentheses: ratio to the best peer.",
        "",
    ]
    by = {}
    for r in rows:
        by.setdefault((r["dir"], r["workload"]), {})[r["library"]] = r
    results = {}
    for d in ["decode", "encode"]:
        out += [f"### {d.capitalize()}", "",
                "| workload | " + " | ".join(CODEC_LIBS) +
                " | memcpy | memcpy into messages | weft / best peer | weft / memcpy | weft / memcpy into messages |",
                "|---|" + "---:|" * (len(CODEC_LIBS) + 5)]
        for (dd, w), libs in by.items():
            if dd != d:
                continue
            peers = [libs[p]["gb_per_s"] for p in PEERS if p in libs]
            best = max(peers) if peers else None
            cells = []
            for l in CODEC_LIBS:
                if l not in libs:
                    cells.append("-")
                    continue
                x = libs[l]
                rr = f" ({x['gb_per_s'] / best:.2f})" if best else ""
                cells.append(f"{x['gb_per_s']:.2f} GB/s, {fmt(x['msgs_per_s'])} msg/s{rr}")
            mc = libs.get("memcpy")
            mm = libs.get("memcpy-msg")
            wf = libs.get("weft")
            r_peer = wf["gb_per_s"] / best if (wf and best) else None
            r_mem = wf["gb_per_s"] / mc["gb_per_s"] if (wf and mc) else None
            r_msg = wf["gb_per_s"] / mm["gb_per_s"] if (wf and mm) else None
            results[(d, w)] = (wf, r_peer, r_mem, r_msg)
            out.append(f"| {w} | " + " | ".join(cells) +
                       (f" | {mc['gb_per_s']:.2f} GB/s" if mc else " | -") +
                       (f" | {mm['gb_per_s']:.2f} GB/s" if mm else " | -") +
                       (f" | **{r_peer:.2f}**" if r_peer else " | -") +
                       (f" | {r_mem:.2f}" if r_mem else " | -") +
                       (f" | {r_msg:.2f} |" if r_msg else " | - |"))
        out.append("")
    return out, results


def idle_section(rows, m):
    out = ["## Idle connections", "", meta_line(m), ""]
    out += [
        "10,000 connections opened (handshake done) and left idle; measured 3 s after the "
        "last one opened (an io_uring server gives a quiet connection's receive buffer back "
        "after 1-2 s). RSS: the server's VmRSS "
        "after minus before, per connection. Heap: live bytes of the server's counting "
        "global allocator (reported on SIGUSR1) after minus before, per connection; the "
        "blocks column lists the 16-byte size classes that grew by at least half a block per "
        "connection (`<=4096: 1.00` = one block of 4081-4096 bytes each). In parentheses: "
        "ratio to the best peer. The servers drop the handshake request once accepted.",
        "",
        "| library | RSS / conn | heap / conn | allocations / conn | live blocks per conn by size (bytes: count) | time to open all |",
        "|---|---:|---:|---:|---|---:|",
    ]
    # (weft-uring is weft too: not a peer.)
    peers = [r for r in rows if r["server"] in PEERS and r.get("heap_per_conn_bytes") is not None]
    best_heap = min((r["heap_per_conn_bytes"] for r in peers), default=None)
    best_rss = min((r["rss_per_conn_bytes"] for r in peers), default=None)
    weft = None
    for r in rows:
        if "error" in r:
            out.append(f"| {r['server']} | error: {r['error']} | | | | |")
            continue
        h, s = r["heap_per_conn_bytes"], r["rss_per_conn_bytes"]
        if r["server"] == "weft":
            weft = r
        out.append(f"| {r['server']} | {s / 1024:.1f} KiB ({s / best_rss:.2f}) | "
                   f"{h / 1024:.1f} KiB ({h / best_heap:.2f}) | {r['allocs_per_conn']} | "
                   f"{r.get('blocks_per_conn_by_size') or '-'} | {r['open_secs']:.1f} s |")
    out.append("")
    return out, weft


def deflate_section(rows, m, zlib_versions):
    out = ["## Compressed echo (permessage-deflate, RFC 7692)", "", meta_line(m), ""]
    out += [
        "The echo matrix's method (server on CPU 0, load generator on CPU 1, fresh server "
        "per run, rotated order, median over repeats) with compression: text messages of "
        "JSON-like event records (ids, timestamps, prices, words from a seeded generator; "
        "each message different) from a pool made before the timed window. The load "
        "generator offers `permessage-deflate; client_max_window_bits` (context takeover "
        "both ways; the last two rows also `server_no_context_takeover; "
        "client_no_context_takeover`), compresses each message itself (zlib level 1, raw "
        "deflate, sync flush, tail removed, RSV1, masked), inflates every echo and compares "
        "it whole with what it sent. The servers run with weft's defaults: level 1, 15-bit "
        "windows, context takeover unless the client asks otherwise. weft and yawc compress "
        "with zlib-rs (flate2's features unify in bench/'s workspace); ratchet needs C zlib "
        "(" + zlib_versions + "), built in its own workspace (bench/zlib-peers). "
        "_weft/off_: echo-weft without compression, the same messages uncompressed: what "
        "compression costs. In parentheses: ratio to the best compressing peer; then weft's "
        "ratio in bold.",
        "",
    ]
    by = {}
    errors = []
    for r in rows:
        key = (r.get("offer", "takeover"), r["conns"], r["size"], r["inflight"])
        by.setdefault(key, {}).setdefault(r["server"], []).append(r)
        if r.get("errors"):
            errors.append(r)
    keys = sorted(by, key=lambda k: (k[0] != "takeover", k[1], k[2], k[3]))
    cols = [l for l in DEFLATE_LIBS + [DEFLATE_OFF] if any(l in by[k] for k in keys)]
    peers = [l for l in cols if l not in ("weft", DEFLATE_OFF)]

    def metric(k, lib, field):
        runs = [x for x in by[k].get(lib, []) if not x.get("errors")]
        if not runs and lib == DEFLATE_OFF and k[0] != "takeover":
            runs = [x for x in by.get(("takeover",) + k[1:], {}).get(lib, []) if not x.get("errors")]
        return med([x.get(field) for x in runs])

    def cell_name(k):
        offer, c, s, f = k
        size = {1024: "1 KiB", 16384: "16 KiB"}.get(s, f"{s} B")
        return f"{c} x {size} x {f}" + (" no takeover" if offer != "takeover" else "")

    def table(title, field, higher_better, digits, note=None):
        return ratio_table(title, "conns x text size x in flight", cols, peers, keys, by, metric,
                           cell_name, field, higher_better, digits, note)

    t, _ = table("Throughput, echoes/s", "msgs_per_sec", True, 1)
    out += t
    t, cpu_ratios = table("Server CPU per echo, µs", "server_cpu_us_per_echo", False, 2,
                          "Inflate of the message, the library's own work, deflate of the echo. "
                          "The weft/off column against weft's: what compression costs weft.")
    out += t
    t, _ = table("Wire bytes per echo (frame header + compressed payload, server to client)",
                 "echo_wire_bytes", False, 0,
                 "Lower is better. The client's messages (level 1, zlib-rs) are the same for "
                 "every server; their median size is in the next table.")
    out += t
    # The compression ratio each server achieved, and the client's own.
    out += ["### Compression ratio of the echoes (message bytes / payload bytes on the wire)", "",
            "| conns x text size x in flight | " + " | ".join(l for l in cols if l != DEFLATE_OFF) +
            " | client's messages |", "|---|" + "---:|" * len(cols)]
    for k in keys:
        cells = []
        for l in cols:
            if l == DEFLATE_OFF:
                continue
            w = metric(k, l, "echo_wire_bytes")
            hdr = 2 if k[2] < 126 else 4
            cells.append(f"{k[2] / (w - hdr):.2f}" if w else "-")
        sw = med([x.get("sent_wire_bytes") for l in cols if l != DEFLATE_OFF
                  for x in by[k].get(l, []) if not x.get("errors")])
        hdr = 6 if k[2] < 126 else 8
        out.append(f"| {cell_name(k)} | " + " | ".join(cells) +
                   (f" | {k[2] / (sw - hdr):.2f} |" if sw else " | - |"))
    out.append("")
    if errors:
        out += ["### Runs with errors", ""]
        for e in errors:
            out.append(f"- {e['server']} {cell_name((e.get('offer', 'takeover'), e['conns'], e['size'], e['inflight']))} "
                       f"repeat {e.get('repeat')}: {e.get('first_error')}")
        out.append("")
    return out, cpu_ratios, cell_name


def deflate_idle_section(rows, m):
    n = rows[0].get("conns") if rows else None
    out = ["### Memory of a compressed connection", "", meta_line(m), ""]
    out += [
        f"{n:,} connections opened with permessage-deflate offered (both offers) and "
        "accepted, then idle: _handshake_ right after the handshake; _one message_ after "
        "each connection echoed one 1 KiB compressed JSON-like text message (so a library "
        "that sets up its compressor and decompressor on first use has done so). Heap and "
        "RSS per connection as in the idle table (after minus before, divided by the "
        "connections); the blocks column lists what each connection holds (16-byte size "
        "classes, at least half a block per connection; `>65536` is one block over 64 KiB). "
        "_weft/off_: the same without compression.",
        "",
        "| library | offer | when | RSS / conn | heap / conn | allocations / conn | live blocks per conn by size (bytes: count) |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        when = "one message" if r.get("one_message") else "handshake"
        offer = "-" if r["server"] == DEFLATE_OFF else r.get("offer", "?")
        if "error" in r:
            out.append(f"| {r['server']} | {offer} | {when} | error: {r['error']} | | | |")
            continue
        h, s = r["heap_per_conn_bytes"], r["rss_per_conn_bytes"]
        out.append(f"| {r['server']} | {offer} | {when} | {s / 1024:.1f} KiB | {h / 1024:.1f} KiB | "
                   f"{r['allocs_per_conn']} | {r.get('blocks_per_conn_by_size') or '-'} |")
    out.append("")
    return out


def deflate_settings_section(rows, m):
    out = ["### weft's compression settings", "", meta_line(m), ""]
    out += [
        "echo-weft alone at 64 connections x 8 in flight, one setting changed at a time "
        "from its defaults (`DeflateConfig::level`, `server_max_window_bits` and "
        "`client_max_window_bits` together; _no context takeover_ is the client's offer, "
        "which weft accepts; _off_ is no compression). Median over repeats. Memory: "
        f"{next((r.get('conns') for r in rows if r.get('part') == 'memory'), '?'):,} "
        "connections after one 1 KiB message each way, per connection.",
        "",
        "| setting | 1 KiB: echoes/s | 1 KiB: CPU µs/echo | 1 KiB: wire bytes/echo | "
        "16 KiB: echoes/s | 16 KiB: CPU µs/echo | 16 KiB: wire bytes/echo | RSS / conn | heap / conn | "
        "other procs, cores |",
        "|---|" + "---:|" * 9,
    ]
    # In bench/run's order (the memory runs follow it; the echo runs rotate).
    variants = []
    for r in sorted(rows, key=lambda r: r.get("part") != "memory"):
        if r["variant"] not in variants:
            variants.append(r["variant"])
    for v in variants:
        cells = []
        for size in (1024, 16384):
            runs = [r for r in rows if r["variant"] == v and r.get("part") == "echo"
                    and r.get("size") == size and not r.get("errors")]
            cells += [fmt(med([r.get("msgs_per_sec") for r in runs]), 1),
                      fmt(med([r.get("server_cpu_us_per_echo") for r in runs]), 2),
                      fmt(med([r.get("echo_wire_bytes") for r in runs]), 0)]
        mem = [r for r in rows if r["variant"] == v and r.get("part") == "memory"]
        if mem and "error" not in mem[0]:
            cells += [f"{mem[0]['rss_per_conn_bytes'] / 1024:.1f} KiB",
                      f"{mem[0]['heap_per_conn_bytes'] / 1024:.1f} KiB"]
        else:
            cells += ["-", "-"]
        noise = med([max(0.0, noise_cpu(r)) / r["secs"] for r in rows
                     if r["variant"] == v and r.get("part") == "echo" and r.get("secs")])
        cells.append(f"{noise:.2f}" if noise is not None else "-")
        out.append(f"| {v} | " + " | ".join(cells) + " |")
    errs = [r for r in rows if r.get("errors") or "error" in r]
    for e in errs:
        out.append(f"- error: {e['variant']}: {e.get('first_error') or e.get('error')}")
    out.append("")
    return out


def server_section(rows, m):
    out = ["## Server stacks", "", meta_line(m), ""]
    out += [
        "The echo matrix's method (server on CPU 0, load generator on CPU 1, a fresh server "
        "per run, rotated order, median over repeats) across server stacks: _echo-weft_ is "
        "weft's direct accept (`weft::tokio::accept_with` on the TCP stream), "
        "_echo-weft-server_ the same echo behind weft::server (hyper's HTTP/1 server, the "
        "WebSocket then on the transport itself), _echo-axum_ axum's `extract::ws` "
        "(tokio-tungstenite on hyper's upgraded connection), _echo-fastwebsockets_ "
        "fastwebsockets with hyper's upgrade. In parentheses: the ratio to echo-weft; in bold "
        "echo-weft-server's. Then plain HTTP/1.1 (`httpload`: keep-alive connections, "
        "`GET /` -> 200 `ok`, each response's status, headers, length and body checked) "
        "against bare hyper (_http-hyper_: `http1::Builder`, `service_fn`); in parentheses "
        "the ratio to http-hyper, in bold echo-weft-server's (the target: within 5%).",
        "",
    ]
    targets = []
    echo_rows = [r for r in rows if r.get("part") == "echo"]
    http_rows = [r for r in rows if r.get("part") == "http"]
    errors = [r for r in rows if r.get("errors")]

    def group(rs, key):
        by = {}
        for r in rs:
            by.setdefault(key(r), {}).setdefault(r["binary"], []).append(r)
        return by

    def metric_of(by):
        def metric(k, b, field):
            runs = [x for x in by[k].get(b, []) if not x.get("errors")]
            return med([x.get(field) for x in runs])
        return metric

    def echo_name(k):
        c, s, f = k
        return f"{c} x " + {16: "16 B", 1024: "1 KiB", 65536: "64 KiB"}.get(s, f"{s} B") + f" x {f}"

    def http_name(k):
        c, f = k
        return f"{c} conn{'s' if c != 1 else ''}, " + ("1 request at a time" if f == 1
                                                        else f"{f} pipelined")

    if echo_rows:
        by = group(echo_rows, lambda r: (r["conns"], r["size"], r["inflight"]))
        keys = sorted(by)
        cols = [b for b in SERVER_ECHO if any(b in by[k] for k in keys)]
        if "echo-weft-server" not in cols:
            out += ["_echo-weft-server was not in this run (not built yet)._", ""]
        metric = metric_of(by)
        out += ["### Echo through each stack", ""]
        for title, field, hb, digits in [("Throughput, echoes/s", "msgs_per_sec", True, 1),
                                         ("Server CPU per echo, µs", "server_cpu_us_per_echo", False, 2),
                                         ("p99 latency, µs", "p99_us", False, 0)]:
            t, r = ratio_table(title, "conns x size x in flight", cols, ["echo-weft"], keys, by,
                               metric, echo_name, field, hb, digits, subject="echo-weft-server",
                               ratio_head="echo-weft-server / echo-weft")
            t[0] = "#" + t[0]
            out += t
            if field == "server_cpu_us_per_echo" and r:
                worst = max(r)
                targets.append(f"- weft::server's echo, server CPU per echo against the direct accept: "
                               f"{min(r)[0]:.2f}-{worst[0]:.2f}x (worst at {echo_name(worst[1])})")
    if http_rows:
        by = group(http_rows, lambda r: (r["conns"], r["inflight"]))
        keys = sorted(by)
        cols = [b for b in SERVER_HTTP if any(b in by[k] for k in keys)]
        metric = metric_of(by)
        sizes = ", ".join(f"{b} {fmt(med([x.get('response_bytes') for k in keys for x in by[k].get(b, [])]), 0)} B"
                          for b in cols)
        out += ["### Plain HTTP requests", "",
                f"Response size on the wire (head and body): {sizes}.", ""]
        rate = cpu = None
        for title, field, hb, digits in [("Requests/s", "requests_per_sec", True, 1),
                                         ("Server CPU per request, µs", "server_cpu_us_per_request", False, 2),
                                         ("p99 latency, µs", "p99_us", False, 0)]:
            t, r = ratio_table(title, "connections, requests in flight", cols, ["http-hyper"], keys,
                               by, metric, http_name, field, hb, digits, subject="echo-weft-server",
                               ratio_head="echo-weft-server / http-hyper")
            t[0] = "#" + t[0]
            out += t
            if field == "requests_per_sec":
                rate = r
            elif field == "server_cpu_us_per_request":
                cpu = r
        if rate:
            ok = [x for x, _ in rate if x >= 0.95]
            targets.append(f"- weft::server plain HTTP requests/s >= 0.95x bare hyper's: **{len(ok)}/{len(rate)} cells**; "
                           f"worst {min(rate)[0]:.2f} at {http_name(min(rate)[1])}")
        if cpu:
            ok = [x for x, _ in cpu if x <= 1.05]
            targets.append(f"- weft::server plain HTTP CPU per request <= 1.05x bare hyper's: **{len(ok)}/{len(cpu)} cells**; "
                           f"worst {max(cpu)[0]:.2f} at {http_name(max(cpu)[1])}")
    if errors:
        out += ["### Runs with errors", ""]
        for e in errors:
            cell = (echo_name((e.get("conns"), e.get("size"), e.get("inflight"))) if e.get("part") == "echo"
                    else http_name((e.get("conns"), e.get("inflight"))))
            out.append(f"- {e['binary']} {e['part']} {cell} repeat {e.get('repeat')}: {e.get('first_error')}")
        out.append("")
    return out, targets


def daemon_section(rows, m):
    out = ["## Daemons: websockd against websocketd", "", meta_line(m), ""]
    m = m or {}
    wsd = m.get("websockd_bin", "")
    out += [
        "Both daemons run with websocketd's command line (`DAEMON --port=P --address=127.0.0.1 "
        "PROGRAM`), started fresh for every run, pinned to CPU 0 (the programs they start "
        "inherit that), the load generator on CPU 1; rotated order, median over repeats; "
        f"websocketd {m.get('websocketd_version', '?')} (Debian's package: Go, one goroutine "
        "set per connection), websockd from this tree"
        + (f" (`{wsd}`)" if wsd and not wsd.endswith("/target/release/websockd") else "")
        + ". Both log at their default level (websocketd: a line per connect and disconnect, "
        "to a file). In parentheses and in bold: websockd / websocketd.",
        "",
    ]
    if m.get("notes"):
        out += [f"_Skipped: {m['notes']}_", ""]
    targets = []
    echo_rows = [r for r in rows if r.get("part") == "echo"]
    conn_rows = [r for r in rows if r.get("part") == "connect"]
    idle_rows = [r for r in rows if r.get("part") == "idle"]
    errors = [r for r in rows if r.get("errors")]

    def group(rs, key):
        by = {}
        for r in rs:
            by.setdefault(key(r), {}).setdefault(r["daemon"], []).append(r)
        return by

    def metric_of(by):
        def metric(k, d, field):
            runs = [x for x in by[k].get(d, []) if not x.get("errors")]
            return med([x.get(field) for x in runs])
        return metric

    def echo_name(k):
        c, s_, f = k
        return (f"{c} x " + {16: "16 B", 1024: "1 KiB"}.get(s_, f"{s_} B") + f" x {f}")

    def conn_name(k):
        return f"{k} worker{'s' if k != 1 else ''}"

    def table(title, head, by, keys, name, field, hb, digits, note=None):
        cols = [d for d in DAEMONS if any(d in by[k] for k in keys)]
        t, r = ratio_table(title, head, cols, ["websocketd"], keys, by, metric_of(by), name,
                           field, hb, digits, note=note, subject="websockd",
                           ratio_head="websockd / websocketd")
        t[0] = "#" + t[0]
        return t, r

    if echo_rows:
        by = group(echo_rows, lambda r: (r["conns"], r["size"], r["inflight"]))
        keys = sorted(by)
        out += ["### Line echo through `cat`", "",
                "`loadgen --kind text --line-safe`: each connection keeps N text messages in "
                "flight (no line break in any payload: lowercase letters and hex digits); the "
                "daemon writes each with a newline to its `cat` and sends each line back as one "
                "message; every echo checked (order, kind, length, tag, sampled bytes). CPU: "
                "the daemon's process tree (the daemon and its `cat`s: utime+stime, the `cat`s' "
                "on-CPU time from schedstat) over the measured window, per message.", ""]
        for title, field, hb, digits in [("Messages/s", "msgs_per_sec", True, 1),
                                         ("CPU of the daemon and its `cat`s per message, µs",
                                          "server_tree_cpu_us_per_echo", False, 2),
                                         ("The daemon's own CPU per message, µs",
                                          "server_cpu_us_per_echo", False, 2),
                                         ("p99 latency, µs", "p99_us", False, 0)]:
            t, r = table(title, "conns x size x in flight", by, keys, echo_name, field, hb, digits)
            out += t
            if field == "msgs_per_sec" and r:
                ok = [x for x, _ in r if x >= 3]
                worst = min(r)
                targets.append(f"- websockd messages/s >= 3x websocketd's (line echo through cat): "
                               f"**{len(ok)}/{len(r)} cells**; {worst[0]:.2f}-{max(r)[0]:.2f}x, "
                               f"worst at {echo_name(worst[1])}")
            if field == "server_tree_cpu_us_per_echo" and r:
                targets.append(f"- (CPU per message, daemon + cat: websockd/websocketd "
                               f"{min(r)[0]:.2f}-{max(r)[0]:.2f}x)")
    if conn_rows:
        by = group(conn_rows, lambda r: r["workers"])
        keys = sorted(by)
        ends = []
        for d in DAEMONS:
            rs = [x for k in keys for x in by[k].get(d, []) if not x.get("errors")]
            if rs:
                tcp = sum(x.get("tcp_closes", 0) for x in rs)
                cf = sum(x.get("close_frames", 0) for x in rs)
                by_code = {}
                for x in rs:
                    for kv in (x.get("close_codes") or "").split():
                        c, _, k = kv.partition(":")
                        by_code[c] = by_code.get(c, 0) + int(k or 0)
                codes = ", ".join(f"code {c}: {k}" for c, k in sorted(by_code.items()))
                cc = sum(x.get("client_closes", 0) for x in rs)
                rst = sum(x.get("resets_after_close", 0) for x in rs)
                ends.append(f"{d}: {tcp} TCP closes, {cf} Close frames"
                            + (f" ({codes})" if codes else "")
                            + (f", {cc} left open after the closing handshake" if cc else "")
                            + (f", {rst} resets after the Close" if rst else ""))
        out += ["### Connections per second", "",
                "`connload`: N workers, each connecting again and again to a daemon running "
                "`/bin/echo hello`: handshake (101 and accept checked), the one message "
                "(`hello`), then the end: the TCP close (websocketd) or a Close frame 1000, "
                "answered, then the TCP close. CPU: the daemon's process tree, the programs it "
                "ran and reaped included (their fork and exec are most of it), per connection.",
                "", "How the connections ended: " + "; ".join(ends) + ".", ""]
        for title, field, hb, digits in [("Connections/s", "conns_per_sec", True, 1),
                                         ("CPU of the daemon and its programs per connection, µs",
                                          "server_tree_cpu_us_per_conn", False, 0),
                                         ("The daemon's own CPU per connection, µs",
                                          "server_cpu_us_per_conn", False, 0),
                                         ("p99 connection time, µs", "p99_us", False, 0)]:
            t, r = table(title, "concurrent connections", by, keys, conn_name, field, hb, digits)
            out += t
            if field == "conns_per_sec" and r:
                ok = [x for x, _ in r if x >= 2]
                worst = min(r)
                targets.append(f"- websockd connections/s >= 2x websocketd's: **{len(ok)}/{len(r)} cells**; "
                               f"{worst[0]:.2f}-{max(r)[0]:.2f}x, worst at {conn_name(worst[1])}")
    if idle_rows:
        n = idle_rows[0].get("conns")
        out += ["### Memory per idle connection", "",
                f"`idle` opens {n} connections to a daemon running `cat` (one first, kept, so "
                "one-time growth is not charged), each handshaken and then silent; the daemon's "
                "own RSS (VmRSS; not its `cat`s', which every daemon pays alike) after less "
                f"before, divided by {n}. Median over repeats.", "",
                "| daemon | RSS before, KiB | RSS after, KiB | RSS per connection, KiB | websockd / websocketd |",
                "|---|---:|---:|---:|---:|"]
        vals = {}
        for d in DAEMONS:
            rs = [x for x in idle_rows if x["daemon"] == d and not x.get("errors")]
            if rs:
                vals[d] = (med([x["rss_before_kib"] for x in rs]), med([x["rss_after_kib"] for x in rs]),
                           med([x["rss_per_conn_bytes"] for x in rs]))
        ref = vals.get("websocketd")
        for d, (b, a, per) in vals.items():
            r = per / ref[2] if ref and ref[2] else None
            out.append(f"| {d} | {b:.0f} | {a:.0f} | {per / 1024:.1f} | "
                       + (f"**{r:.2f}**" if r is not None and d == "websockd" else "-") + " |")
        out.append("")
        if "websockd" in vals and ref and ref[2]:
            r = vals["websockd"][2] / ref[2]
            targets.append(f"- websockd memory per idle connection <= 1/4 of websocketd's: "
                           f"**{r:.2f}x** ({vals['websockd'][2] / 1024:.1f} KiB against "
                           f"{ref[2] / 1024:.1f} KiB)")
    if targets:
        out[4:4] = ["Targets (issue 10):", ""] + targets + [""]
    if errors:
        out += ["### Runs with errors", ""]
        for e in errors:
            cell = (echo_name((e.get("conns"), e.get("size"), e.get("inflight"))) if e.get("part") == "echo"
                    else conn_name(e.get("workers")) if e.get("part") == "connect"
                    else f"{e.get('conns')} idle connections")
            out.append(f"- {e['daemon']} {e['part']} {cell} repeat {e.get('repeat')}: {e.get('first_error')}")
        out.append("")
    return out, [t.replace("- ", "- daemons (issue 10): ", 1) for t in targets if t.startswith("- websockd")]


def target_line(label, ratios, limit, against, cell_name, span=False):
    """One target line: how many cells' ratios are within `limit`, and the worst (with
    `span`, the best to the worst). `ratios` holds (ratio, cell key) pairs."""
    ok = [r for r, _ in ratios if r <= limit]
    worst = max(ratios)
    if span:
        best = min(ratios)
        extreme = (f"{best[0]:.2f} at {cell_name(best[1])} "
                   f"to {worst[0]:.2f} at {cell_name(worst[1])}")
    else:
        extreme = f"worst {worst[0]:.2f} at {cell_name(worst[1])}"
    return f"- {label} <= {limit}x {against}: **{len(ok)}/{len(ratios)} cells**; {extreme}"


def main():
    res, lock = sys.argv[1], sys.argv[2]
    machine = {}
    p = os.path.join(res, "machine.txt")
    if os.path.exists(p):
        for line in open(p):
            k, _, v = line.rstrip("\n").partition("=")
            machine[k] = v
    vers = versions(lock)
    out = ["# weft benchmark results", "",
           "Written by `bench/run` (see `bench/README.md`); each part below carries its own date.",
           "",
           "## Machine and versions", "",
           f"- machine: `{machine.get('uname', '?')}`",
           f"- CPU: {machine.get('cpu', '?')}, {machine.get('cpus', '?')} CPUs (a KVM guest; other "
           "engineers build and test on the same machine, so expect noise: see the _other procs_ column)",
           f"- {machine.get('rustc', '?')}; release profile with `codegen-units = 1`, thin LTO, for every library",
           "- crates (from bench/Cargo.lock): " +
           ", ".join(f"{k} {'/'.join(v)}" for k, v in sorted(vers.items())),
           ""]
    mrows = load(os.path.join(res, "matrix.jsonl"))
    crows = load(os.path.join(res, "codec.jsonl"))
    irows = load(os.path.join(res, "idle.jsonl"))
    drows = load(os.path.join(res, "deflate.jsonl"))
    dirows = load(os.path.join(res, "deflate-idle.jsonl"))
    targets = ["## Targets (issue 4)", ""]
    body = []
    if mrows:
        t, msg_r, cpu_r, cell_name, floor_r = matrix_section(
            mrows, meta(res, "matrix"), load(os.path.join(res, "syscalls.jsonl")),
            meta(res, "syscalls"))
        body += t
        floor_r, uring_floor_r = floor_r
        cpu_r, uring_cpu_r = cpu_r
        if floor_r:
            targets.append(target_line("(issue 12) weft's server CPU per echo", floor_r, 1.15,
                                       "floor-epoll's", cell_name))
        for lib in URING_LIBS:
            if uring_floor_r.get(lib):
                targets.append(target_line(f"(issue 12) {lib}'s server CPU per echo",
                                           uring_floor_r[lib], 1.15, "floor-uring's", cell_name))
        for lib in URING_LIBS:
            if uring_cpu_r.get(lib):
                targets.append(target_line(f"(issue 12) {lib}'s server CPU per echo",
                                           uring_cpu_r[lib], 0.8, "the best peer in every cell",
                                           cell_name, span=True))
        if cpu_r:
            targets.append(target_line("server CPU per echo", cpu_r, 0.8,
                                       "the best peer in every cell", cell_name))
    if crows:
        t, cres = codec_section(crows, meta(res, "codec"))
        body += t
        rp = [(v[1], k) for k, v in cres.items() if v[1]]
        if rp:
            ok = [r for r, _ in rp if r >= 1.2]
            worst = min(rp)
            targets.append(f"- codec >= 1.2x the best peer on every workload: **{len(ok)}/{len(rp)}**; "
                           f"worst {worst[0]:.2f} ({worst[1][0]} {worst[1][1]})")
        for d in ["decode", "encode"]:
            for (dd, w), (wf, _, rm, rmsg) in cres.items():
                if dd == d and "1 MiB" in w and rm:
                    extra = (f" ({rmsg * 100:.0f}% of a memcpy into message-sized buffers)"
                             if rmsg else "")
                    targets.append(f"- {d} 1 MiB binary >= 95% of memcpy: **{rm * 100:.0f}%**{extra}")
                if dd == d and "16 B" in w and wf:
                    targets.append(f"- {d} >= 30 M 16 B messages/s: **{wf['msgs_per_s'] / 1e6:.1f} M/s**")
    if irows:
        t, weft = idle_section(irows, meta(res, "idle"))
        body += t
        if weft and weft.get("heap_per_conn_bytes") is not None:
            targets.append(f"- <= 2 KiB heap per idle connection: **{weft['heap_per_conn_bytes'] / 1024:.1f} KiB**")
    if drows or dirows:
        zlock = os.path.join(os.path.dirname(lock), "zlib-peers", "Cargo.lock")
        zv = versions(zlock, ["ratchet_rs", "ratchet_deflate", "libz-sys", "flate2"])
        zdesc = ", ".join(f"{k} {'/'.join(v)}" for k, v in sorted(zv.items())) or "versions unknown"
        if drows:
            t, dcpu, dname = deflate_section(drows, meta(res, "deflate"), zdesc)
            body += t
            if dcpu:
                worst = max(dcpu)
                targets.append(f"- compressed echo, server CPU per echo against the best compressing peer: "
                               f"weft's ratio {min(dcpu)[0]:.2f}-{worst[0]:.2f} (worst at {dname(worst[1])})")
        else:
            body += ["## Compressed echo (permessage-deflate, RFC 7692)", ""]
        if dirows:
            body += deflate_idle_section(dirows, meta(res, "deflate-idle"))
    dsrows = load(os.path.join(res, "deflate-settings.jsonl"))
    if dsrows:
        if not (drows or dirows):
            body += ["## Compressed echo (permessage-deflate, RFC 7692)", ""]
        body += deflate_settings_section(dsrows, meta(res, "deflate-settings"))
    srows = load(os.path.join(res, "server.jsonl"))
    if srows:
        t, st = server_section(srows, meta(res, "server"))
        body += t
        targets += st
    darows = load(os.path.join(res, "daemon.jsonl"))
    if darows:
        t, dt = daemon_section(darows, meta(res, "daemon"))
        body += t
        targets += dt
    targets.append("")
    print("\n".join(out + targets + body))


if __name__ == "__main__":
    main()
