#!/usr/bin/env python3
"""Slow and hung plugins under load: does /hello keep its figures while another plugin blocks?

`python3 bench/slow.py` builds the release host with the `hello` plugin and the `slow` fixture,
starts it (in a session of its own) with `workers = 64` and `[limits] handler_timeout_ms = 10000`,
and measures, side by side in one run:

1. **quiet**: wrk on `/hello` (keep-alive, 64 connections, one thread, 60 s) alone;
2. **loaded**: the same, while 50 clients call `/slow/sleep/2000` back to back and 5 call
   `/slow/hang` (which never returns: each gets a 504 at the 10 s deadline, and its worker is
   written off and replaced).

Rounds alternate quiet and loaded (3 rounds by default); it reports medians of `/hello` req/s and
p99, their ratio to the quiet run, wrk's errors (the target is none), and what the slow clients
got (answers by status) and the workers written off (from the admin `/status`).

Then **workers**: the same host with `--workers 2` and `--workers 256`, idle, then wrk on `/hello`
(keep-alive, 10 s, rounds alternating): resident memory after start and req/s and p99, to show
what 254 idle workers cost (RSS of the supervisor and its server process, idle and after the
runs). Every process it starts is stopped, by its id, even on error.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time

from run import ROOT, Server, log, parse_wrk

PORT, ADMIN = 18093, 18094


def build():
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "mini-async-http", "-p",
                    "hello", "-p", "slow"], cwd=ROOT, check=True)


class Host(Server):
    """The release host serving `hello` and `slow` with `workers` workers (run.py's `Server`)."""

    def __init__(self, tmp, workers, port, admin=False):
        target = os.path.join(ROOT, "target", "release")
        plugins = os.path.join(tmp, "plugins")
        os.makedirs(plugins, exist_ok=True)
        for lib in ("libhello.so", "libslow.so"):
            shutil.copy(os.path.join(target, lib), plugins)
        config = os.path.join(tmp, f"config-{workers}.toml")
        with open(config, "w") as f:
            f.write(f'listen = "127.0.0.1:{port}"\nworkers = {workers}\n'
                    "[limits]\nhandler_timeout_ms = 10000\nmax_connections = 20000\n")
            if admin:
                f.write(f'[admin]\nlisten = "127.0.0.1:{ADMIN}"\n')
        super().__init__(f"{workers} workers", [os.path.join(target, "mini-async-http"),
                                                "--config", config, "--plugins", plugins],
                         port, cwd=tmp)
        self.start()


def status():
    with socket.create_connection(("127.0.0.1", ADMIN), timeout=10) as s:
        s.sendall(b"GET /status HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def wrk(port, duration, host=None):
    cpu0 = host.cpu_seconds() if host else 0
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{duration}s", "--latency",
                          f"http://127.0.0.1:{port}/hello"],
                         check=True, capture_output=True, text=True).stdout
    parsed = parse_wrk(out)
    requests, rps, p99, errors = (parsed[k] for k in ("requests", "rps", "p99_ms", "errors"))
    if errors:
        log("  wrk reported errors:\n" + "\n".join(
            line for line in out.splitlines() if "errors" in line or "Non-2xx" in line))
    result = {"rps": rps, "p99_ms": p99, "errors": errors}
    if host:
        result["cpu_us"] = (host.cpu_seconds() - cpu0) * 1e6 / max(1, requests)
    return result


class SlowClients:
    """`count` threads calling `path` back to back, each on a keep-alive connection of its own."""

    def __init__(self, port, path, count):
        self.port, self.path, self.stop = port, path, threading.Event()
        self.statuses, self.lock = {}, threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(count)]
        for t in self.threads:
            t.start()

    def run(self):
        request = f"GET {self.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        sock = None
        while not self.stop.is_set():
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
                sock.sendall(request)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise OSError("closed")
                    head += chunk
                code = int(head[9:12])
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
                body = head.split(b"\r\n\r\n", 1)[1]
                while len(body) < length:
                    body += sock.recv(4096)
                with self.lock:
                    self.statuses[code] = self.statuses.get(code, 0) + 1
                if b"connection: close" in head.lower():
                    sock.close()
                    sock = None
            except (OSError, ValueError, AttributeError):
                with self.lock:
                    self.statuses["error"] = self.statuses.get("error", 0) + 1
                if sock:
                    sock.close()
                sock = None
                time.sleep(0.05)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)
        return dict(self.statuses)


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def report(quiet, loaded, slow_answers, plugin, args):
    q_rps, l_rps = med(quiet, "rps"), med(loaded, "rps")
    print(f"/hello, 64 connections, {args.duration} s, medians of {args.rounds} rounds:")
    print("| run | req/s | × quiet | p99 ms | errors |")
    print("|---|---|---|---|---|")
    print(f"| quiet | {q_rps:,.0f} | 1.00 | {med(quiet, 'p99_ms'):.2f} | "
          f"{sum(r['errors'] for r in quiet)} |")
    print(f"| 50 × sleep 2 s + 5 × hang | {l_rps:,.0f} | {l_rps / q_rps:.2f} | "
          f"{med(loaded, 'p99_ms'):.2f} | {sum(r['errors'] for r in loaded)} |")
    print(f"slow clients' answers: {slow_answers}")
    print(f"slow plugin: timed out {plugin['timed_out']}, refused {plugin['refused']}, "
          f"stuck now {plugin['lost_workers']}, limit {plugin['max_concurrency']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds per wrk run (60)")
    parser.add_argument("--rounds", type=int, default=3, help="quiet/loaded rounds (3)")
    parser.add_argument("--worker-duration", type=int, default=10,
                        help="seconds per wrk run of the workers comparison (10)")
    parser.add_argument("--only-workers", action="store_true",
                        help="only the comparison of 2 and 256 workers")
    args = parser.parse_args()
    build()
    quiet, loaded, slow_answers, plugin = [], [], {}, None
    with tempfile.TemporaryDirectory(prefix="mah-slow-") as tmp:
        host = None if args.only_workers else Host(tmp, 64, PORT, admin=True)
        try:
            for round_no in range(0 if args.only_workers else args.rounds):
                log(f"round {round_no + 1} of {args.rounds}")
                quiet.append(wrk(PORT, args.duration))
                log(f"  quiet   {quiet[-1]}")
                sleepers = SlowClients(PORT, "/slow/sleep/2000", 50)
                hangers = SlowClients(PORT, "/slow/hang", 5)
                time.sleep(3)  # every slow client has a call in flight
                loaded.append(wrk(PORT, args.duration))
                log(f"  loaded  {loaded[-1]}")
                for name, clients in (("sleep 2 s", sleepers), ("hang", hangers)):
                    for code, n in clients.finish().items():
                        key = f"{name}: {code}"
                        slow_answers[key] = slow_answers.get(key, 0) + n
                time.sleep(11)  # the last hangs reach their deadline
            if host:
                plugin = next(p for p in status()["plugins"] if p["name"] == "slow")
        finally:
            if host:
                host.stop()
        workers = {2: [], 256: []}
        rss, rss_after = {}, {}
        hosts = {}
        try:
            for i, n in enumerate(workers):
                hosts[n] = Host(tmp, n, PORT + 10 + i)
            time.sleep(1)
            time.sleep(2)  # plugins loaded, start-up allocations settled
            rss = {n: h.rss_kib() for n, h in hosts.items()}
            for _ in range(args.rounds):
                for n, h in hosts.items():
                    workers[n].append(wrk(h.port, args.worker_duration, h))
                    log(f"  {n} workers {workers[n][-1]}")
            rss_after = {n: h.rss_kib() for n, h in hosts.items()}
        finally:
            for h in hosts.values():
                h.stop()
    if plugin:
        report(quiet, loaded, slow_answers, plugin, args)
    print(f"\nidle workers, /hello keep-alive {args.worker_duration} s, medians of {args.rounds}:")
    print("| workers | RSS idle, KiB | RSS after the runs, KiB | req/s | p99 ms | server CPU µs/req |")
    print("|---|---|---|---|---|---|")
    for n, runs in workers.items():
        print(f"| {n} | {rss[n]:,} | {rss_after[n]:,} | {med(runs, 'rps'):,.0f} | "
              f"{med(runs, 'p99_ms'):.2f} | {med(runs, 'cpu_us'):.2f} |")


if __name__ == "__main__":
    main()
