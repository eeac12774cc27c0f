#!/usr/bin/env python3
"""Summarise an Autobahn|Testsuite report directory (the one holding index.json).

    autobahn-report.py [--expected N] [--expected-ids FILE] [--details] DIR
    autobahn-report.py --update-reports ws://127.0.0.1:9002 AGENT

Exit status 0 only if every case ran and every case is OK or INFORMATIONAL in both
its behaviour and its close behaviour; 1 otherwise (2 for a usage or I/O error).
The second form asks a running `wstest -m fuzzingserver` to write its reports.
Used by scripts/autobahn; standard library only.
"""
import argparse
import base64
import json
import os
import re
import socket
import sys
import time
from collections import Counter, defaultdict
from urllib.parse import quote, urlsplit

BEHAVIOURS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
GOOD = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    return tuple(int(x) if x.isdigit() else x for x in case_id.split("."))


def plain(text):
    """The suite's HTML descriptions as one line of text."""
    text = re.sub(r"<br\s*/?>", " ", text or "")
    text = re.sub(r"<[^>]+>", "", text)
    return " ".join(text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").split())


def short(value, limit):
    s = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return s if len(s) <= limit else s[: limit - 5] + " ...]"


def load_case(outdir, entry):
    path = os.path.join(outdir, entry.get("reportfile") or "")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def summarise(args):
    outdir = args.dir
    index_path = os.path.join(outdir, "index.json")
    expected_ids = None
    if args.expected_ids:
        with open(args.expected_ids, encoding="utf-8") as f:
            expected_ids = json.load(f)
    expected = args.expected if args.expected is not None else (
        len(expected_ids) if expected_ids is not None else None)

    problems = []
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except FileNotFoundError:
        print(f"autobahn: no report at {index_path}: no case ran")
        return 1
    except ValueError as e:
        print(f"autobahn: {index_path} is not valid JSON: {e}")
        return 1
    if not index:
        print(f"autobahn: {index_path} holds no agent: no case ran")
        return 1

    status = 0
    for agent in sorted(index):
        cases = index[agent]
        ids = sorted(cases, key=case_key)
        beh = Counter(cases[c].get("behavior", "?") for c in ids)
        close = Counter(cases[c].get("behaviorClose", "?") for c in ids)
        print()
        print(f"Autobahn|Testsuite results for agent {agent!r}: {len(ids)} cases"
              + (f" (expected {expected})" if expected is not None else ""))
        print()
        names = BEHAVIOURS + sorted((set(beh) | set(close)) - set(BEHAVIOURS))
        print(f"  {'':15} {'behavior':>9} {'close':>9}")
        for name in names:
            print(f"  {name:15} {beh.get(name, 0):>9} {close.get(name, 0):>9}")
        print(f"  {'total':15} {len(ids):>9} {len(ids):>9}")

        # Per section: how many cases, how many not OK/INFORMATIONAL.
        sections = defaultdict(lambda: [0, 0])
        for c in ids:
            sec = c.split(".")[0]
            sections[sec][0] += 1
            e = cases[c]
            if e.get("behavior") not in GOOD or e.get("behaviorClose") not in GOOD:
                sections[sec][1] += 1
        print()
        print("  section   cases  not-ok")
        for sec in sorted(sections, key=case_key):
            n, bad = sections[sec]
            print(f"  {sec:>7} {n:>7} {bad:>7}")

        bad_ids = [c for c in ids
                   if cases[c].get("behavior") not in GOOD
                   or cases[c].get("behaviorClose") not in GOOD]
        print()
        if bad_ids:
            print(f"  {len(bad_ids)} case(s) not OK/INFORMATIONAL:")
            print(f"  {'case':10} {'behavior':14} {'close':14} {'remote close':>12}  description")
            for c in bad_ids:
                e = cases[c]
                rep = load_case(outdir, e)
                desc = plain(rep.get("description", ""))
                if len(desc) > 110 and not args.details:
                    desc = desc[:105] + " ..."
                code = e.get("remoteCloseCode")
                print(f"  {c:10} {e.get('behavior', '?'):14} {e.get('behaviorClose', '?'):14} "
                      f"{str(code):>12}  {desc}")
                if args.details:
                    print(f"      expectation: {plain(rep.get('expectation', ''))}")
                    print(f"      expected:    {short(rep.get('expected'), 400)}")
                    print(f"      received:    {short(rep.get('received'), 400)}")
                    print(f"      result:      {rep.get('result')}")
                    print(f"      close:       {rep.get('resultClose')} "
                          f"(expected close {short(rep.get('expectedClose'), 200)})")
                    print(f"      report:      {os.path.join(outdir, e.get('reportfile', '?'))}")
        else:
            print("  every case is OK or INFORMATIONAL")

        for c in bad_ids:
            e = cases[c]
            if e.get("behavior") not in GOOD:
                problems.append(f"{agent} {c}: behavior {e.get('behavior')}")
            if e.get("behaviorClose") not in GOOD:
                problems.append(f"{agent} {c}: behaviorClose {e.get('behaviorClose')}")
        if expected is not None and len(ids) < expected:
            missing = ""
            if expected_ids is not None:
                gone = [c for c in expected_ids if c not in cases]
                missing = ": missing " + ", ".join(gone[:40]) + (" ..." if len(gone) > 40 else "")
            problems.append(f"{agent}: only {len(ids)} of {expected} cases ran{missing}")

    print()
    if problems:
        status = 1
        print(f"autobahn: FAILED ({len(problems)} problem(s))")
        for p in problems[:20]:
            print(f"  {p}")
        if len(problems) > 20:
            print(f"  ... and {len(problems) - 20} more")
    else:
        print("autobahn: PASSED")
    return status


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def update_reports(url, agent, timeout=300.0):
    """Open ws://HOST:PORT/updateReports?agent=AGENT and wait for the server's close."""
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /updateReports?agent={quote(agent)} HTTP/1.1\r\n"
               f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
        rest = head.split(b"\r\n\r\n", 1)[1]
        # The server writes the reports, then sends a close frame; answer it.
        while True:
            sock.settimeout(max(1.0, deadline - time.monotonic()))
            if len(rest) < 2:
                rest += sock.recv(4096)
                continue
            b0, b1 = rest[0], rest[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                rest += recv_exact(sock, max(0, 4 - len(rest)))
                n, off = int.from_bytes(rest[2:4], "big"), 4
            elif n == 127:
                rest += recv_exact(sock, max(0, 10 - len(rest)))
                n, off = int.from_bytes(rest[2:10], "big"), 10
            if len(rest) < off + n:
                rest += recv_exact(sock, off + n - len(rest))
            payload, rest = rest[off:off + n], rest[off + n:]
            if b0 & 0x0F == 0x8:
                mask = os.urandom(4)
                body = payload[:2]
                sock.sendall(bytes([0x88, 0x80 | len(body)]) + mask
                             + bytes(b ^ mask[i % 4] for i, b in enumerate(body)))
                return


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--update-reports":
        if len(sys.argv) != 4:
            print("usage: autobahn-report.py --update-reports URL AGENT", file=sys.stderr)
            return 2
        try:
            update_reports(sys.argv[2], sys.argv[3])
        except (OSError, ConnectionError) as e:
            print(f"autobahn: /updateReports failed: {e}", file=sys.stderr)
            return 1
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dir", help="directory holding index.json")
    p.add_argument("--expected", type=int, help="number of cases that should have run")
    p.add_argument("--expected-ids", help="JSON file: list of case ids that should have run")
    p.add_argument("--cases", help="(informational) case patterns")
    p.add_argument("--exclude", help="(informational) excluded case patterns")
    p.add_argument("--details", action="store_true",
                   help="print each non-OK case's expectation, expected and received data")
    args = p.parse_args()
    return summarise(args)


if __name__ == "__main__":
    sys.exit(main())
