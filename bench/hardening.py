#!/usr/bin/env python3
"""Long hardening runs against the release host binary, with figures: what the test suite checks
in miniature, at full size.

    python3 bench/hardening.py [slowloris] [flood] [leaks] [soak]   (all four by default)

- slowloris: 1,000 connections trickle their headers one byte per second; they must be cut off at
  the header timeout (5 s here) while wrk's clients keep being served. Reports wrk's p99 and req/s
  without and during the attack.
- flood: 10,000 concurrent keep-alive connections, each answered; then max_connections = 2,000
  with 3,000 clients: the extra ones wait and are served as others close.
- leaks: 100,000 connections (answered, dropped mid-request, dropped mid-head); open descriptors
  before and after.
- soak: at least 1,000,000 keep-alive requests; RSS, threads and descriptors at start and end.
Every server it starts is stopped; traffic stays on 127.0.0.1.
"""

import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the benchmark harness: build, Server, wrk parsing)

HOST_PORT = 18181


def start_host(tmp, config):
    plugins = os.path.join(tmp, "plugins")
    os.makedirs(plugins, exist_ok=True)
    shutil.copy(os.path.join(bench.ROOT, "target", "release", "libhello.so"), plugins)
    path = os.path.join(tmp, "config.toml")
    with open(path, "w") as f:
        f.write(config)
    server = bench.Server("host", [os.path.join(bench.ROOT, "target", "release", "mini-async-http"),
                                   "--config", path, "--plugins", plugins, "--listen",
                                   f"127.0.0.1:{HOST_PORT}", "--workers", "2"], HOST_PORT, cwd=tmp)
    server.start()
    return server


def wrk(duration, connections=16):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
                          f"http://127.0.0.1:{HOST_PORT}/hello"], check=True, capture_output=True,
                         text=True).stdout
    return bench.parse_wrk(out)


def slowloris(tmp):
    server = start_host(tmp, "[limits]\nheader_timeout_ms = 5000\n")
    try:
        base = wrk(5)
        socks = []
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", HOST_PORT))
            s.sendall(b"GET /hello HTTP/1.1\r\n")
            s.setblocking(False)
            socks.append(s)
        started = time.time()
        stop = threading.Event()
        closed_at = {}

        def trickle():
            while not stop.is_set() and len(closed_at) < len(socks):
                for i, s in enumerate(socks):
                    if i in closed_at:
                        continue
                    try:
                        if s.recv(1) == b"":
                            closed_at[i] = time.time() - started
                            continue
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed_at[i] = time.time() - started
                        continue
                    try:
                        s.sendall(b"X")
                    except OSError:
                        closed_at[i] = time.time() - started
                stop.wait(1.0)

        t = threading.Thread(target=trickle)
        t.start()
        during = wrk(8)
        t.join(timeout=30)
        stop.set()
        for s in socks:
            s.close()
        cut = sorted(closed_at.values())
        print(f"slowloris: without attack {base['rps']:,.0f} req/s p99 {base['p99_ms']:.2f} ms; "
              f"during 1,000 trickling connections {during['rps']:,.0f} req/s p99 "
              f"{during['p99_ms']:.2f} ms, errors {during['errors']}; trickling connections cut off: "
              f"{len(cut)}/1000, after {cut[0] if cut else float('nan'):.1f}..{cut[-1] if cut else float('nan'):.1f} s "
              f"(header timeout 5 s)")
    finally:
        server.stop()


def connect_many(n, request=b"GET /hello HTTP/1.1\r\nHost: f\r\n\r\n"):
    socks, errors = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", HOST_PORT), timeout=30)
            s.sendall(request)
            socks.append(s)
        except OSError:
            errors += 1
    return socks, errors


def flood(tmp):
    server = start_host(tmp, "[limits]\nmax_connections = 20000\n")
    try:
        socks, errors = connect_many(10_000)
        ok = sum(1 for s in socks if s.recv(4096).startswith(b"HTTP/1.1 200"))
        print(f"flood: 10,000 concurrent connections: {ok} answered, {errors + len(socks) - ok} errors, "
              f"server fds {len(os.listdir(f'/proc/{server.proc.pid}/fd'))}")
        for s in socks:
            s.close()
    finally:
        server.stop()
    server = start_host(tmp, "[limits]\nmax_connections = 2000\n")
    try:
        socks, errors = connect_many(3000)
        for s in socks:
            s.settimeout(1)
        answered = sum(1 for s in socks[:2000] if s.recv(4096).startswith(b"HTTP/1.1 200"))
        waiting = 0
        for s in socks[2000:]:
            try:
                s.recv(4096)
            except socket.timeout:
                waiting += 1
            if waiting >= 20:
                break
        for s in socks[:2000]:
            s.close()
        for s in socks[2000:]:
            s.settimeout(30)
        late = sum(1 for s in socks[2000:] if s.recv(4096).startswith(b"HTTP/1.1 200"))
        print(f"flood: max_connections 2,000 with 3,000 clients: {answered} answered at once, the "
              f"others waited ({waiting} of the first 20 checked got nothing in 1 s), then {late}/1000 "
              f"answered once the first 2,000 closed; connect errors {errors}")
        for s in socks:
            s.close()
    finally:
        server.stop()


def fds(server):
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def leaks(tmp):
    server = start_host(tmp, "")
    try:
        before = fds(server)
        count = [0]

        def client(n):
            for i in range(n):
                s = socket.create_connection(("127.0.0.1", HOST_PORT))
                if i % 3 == 0:
                    s.sendall(b"GET /hello HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")
                    s.recv(4096)
                elif i % 3 == 1:
                    s.sendall(b"GET /hello HTTP/1.1\r\nHo")
                s.close()
                count[0] += 1

        threads = [threading.Thread(target=client, args=(25_000,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.time() + 30
        while fds(server) > before and time.time() < deadline:
            time.sleep(0.1)
        print(f"leaks: {count[0]:,} connections; server fds before {before}, after {fds(server)}")
    finally:
        server.stop()


def status(server, key):
    with open(f"/proc/{server.proc.pid}/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+)", f.read(), re.M).group(1))


def soak(tmp):
    server = start_host(tmp, "")
    try:
        wrk(2, 32)
        start = (status(server, "VmRSS"), status(server, "Threads"), fds(server))
        total = 0
        while total < 1_000_000:
            total += wrk(10, 32)["requests"]
        end = (status(server, "VmRSS"), status(server, "Threads"), fds(server))
        print(f"soak: {total:,} keep-alive requests; RSS {start[0]} -> {end[0]} KiB, threads "
              f"{start[1]} -> {end[1]}, fds {start[2]} -> {end[2]}")
    finally:
        server.stop()


def main():
    runs = sys.argv[1:] or ["slowloris", "flood", "leaks", "soak"]
    bench.ensure_tools()
    bench.build()
    bench.raise_fd_limit()
    for name in runs:
        with tempfile.TemporaryDirectory(prefix="mah-hard-") as tmp:
            globals()[name](tmp)


if __name__ == "__main__":
    main()
