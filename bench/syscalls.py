#!/usr/bin/env python3
"""Counts the system calls of an strace log inside a time window (bench/run's syscall pass).

usage: syscalls.py STRACE_LOG WINDOW_START WINDOW_END

The log is `strace -f -ttt -o LOG -p PID`'s: one line per call, `PID SECONDS.MICROS name(`.
A call is counted at its entry (a call cut by another thread's line shows as
`name(... <unfinished ...>` and later `<... name resumed>`: only the first is counted).
The window's ends are the load generator's (`window_start_unix`, `window_end_unix`), so the
counts and the echoes it verified cover the same time. Prints one JSON object: name -> count.
"""
import json
import re
import sys

LINE = re.compile(r"^(?:\d+\s+)?(\d+\.\d+)\s+([a-z_0-9]+)\(")


def count(path, start, end):
    out = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            t = float(m.group(1))
            if start <= t <= end:
                out[m.group(2)] = out.get(m.group(2), 0) + 1
    return out


if __name__ == "__main__":
    print(json.dumps(count(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])), sort_keys=True))
