#!/usr/bin/env python3
"""What compression costs and saves: a 20 KiB JSON response sent as it is, gzip and brotli.

`python3 bench/compress.py` builds the release host and the kv plugin, starts the host (in a
session of its own, 2 workers), stores a value whose JSON answer is about 20 KiB, and runs wrk
(keep-alive, 16 connections, one thread) on it `--rounds` times (3 by default) for `--duration`
seconds (5) with `Accept-Encoding: identity`, `gzip` and `br`, the three in turn within each
round. It prints, per coding, the bytes of the body sent, req/s and the server's CPU per
request (medians over the rounds). Every process it starts is stopped, by its id.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile

from run import ROOT, Server, parse_wrk, wait_idle

PORT = 18140
CODINGS = ["identity", "gzip", "br"]


def request(raw):
    with socket.create_connection(("127.0.0.1", PORT)) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(l.split(b":")[1] for l in head.split(b"\r\n")
                          if l.lower().startswith(b"content-length")))
        while len(body) < length:
            body += s.recv(65536)
        return head.decode(), body[:length]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "mini-async-http", "-p", "kv"],
                   cwd=ROOT, check=True)
    target = os.path.join(ROOT, "target", "release")
    results = {c: [] for c in CODINGS}
    with tempfile.TemporaryDirectory(prefix="mah-compress-") as tmp:
        plugins = os.path.join(tmp, "plugins")
        os.makedirs(plugins)
        shutil.copy(os.path.join(target, "libkv.so"), plugins)
        config = os.path.join(tmp, "config.toml")
        open(config, "w").close()
        host = Server("mini-async-http", [os.path.join(target, "mini-async-http"), "--config",
                                          config, "--plugins", plugins, "--listen",
                                          f"127.0.0.1:{PORT}", "--workers", "2"], PORT, cwd=tmp)
        try:
            host.start()
            # Records as an API would answer them: about 20 KiB of JSON.
            value = json.dumps([{"id": i, "name": f"user {i}", "email": f"user{i}@example.com",
                                 "active": i % 3 != 0, "score": i * 37 % 1000}
                                for i in range(230)]).encode()
            request(b"PUT /kv/users HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(value), value))
            sizes = {}
            for c in CODINGS:
                head, body = request(f"GET /kv/users HTTP/1.1\r\nHost: b\r\n"
                                     f"Accept-Encoding: {c}\r\n\r\n".encode())
                sizes[c] = len(body)
            for _ in range(args.rounds):
                for c in CODINGS:
                    wait_idle()
                    cpu0 = host.cpu_seconds()
                    out = subprocess.run(
                        ["wrk", "-t1", "-c16", f"-d{args.duration}s", "--latency", "-H",
                         f"Accept-Encoding: {c}", f"http://127.0.0.1:{PORT}/kv/users"],
                        check=True, capture_output=True, text=True).stdout
                    cpu1 = host.cpu_seconds()
                    r = parse_wrk(out)
                    r["cpu"] = (cpu1 - cpu0) * 1e6 / max(1, r["requests"])
                    results[c].append(r)
        finally:
            host.stop()
    print("| coding | body bytes | req/s | server CPU µs/req | p99 ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for c in CODINGS:
        rs = results[c]
        med = lambda k: statistics.median(r[k] for r in rs)
        print(f"| {c} | {sizes[c]:,} | {med('rps'):,.0f} | {med('cpu'):.1f} | "
              f"{med('p99_ms'):.2f} | {sum(r['errors'] for r in rs)} |")


if __name__ == "__main__":
    main()
