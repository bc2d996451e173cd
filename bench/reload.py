#!/usr/bin/env python3
"""How long from a plugin file written into the plugins folder to its new code answering?

`python3 bench/reload.py` builds the release host (`--debug`: the debug one) and the `flip` fixture twice (variants `a`
and `b`, which answer their letter), starts the host (in a session of its own) with one of them
in its plugins folder, and then, `--swaps` times (20 by default), writes the other variant over
it and measures from the end of that write (the file closed, as `cp` leaves it; `--rename`:
written beside and renamed into place, as `mv` and `install` do) to the first answer of the new
code, asking `/flip` back to back on a keep-alive connection. It prints the median, the 90th
percentile and the maximum, in milliseconds. With `--load`, wrk runs on `/flip` meanwhile
(keep-alive, 16 connections, 5 s timeout) and its requests, errors and latencies are printed too:
what the swaps cost the traffic. Every process it starts is stopped, by its id.
"""

import argparse
import os
import signal
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

from run import ROOT, Server, parse_wrk

PORT = 18120


def build(tmp, profile):
    flags = ["--release"] if profile == "release" else []
    subprocess.run(["cargo", "build", *flags, "--quiet", "-p", "mini-async-http"], cwd=ROOT,
                   check=True)
    variants = {}
    for v in ("a", "b"):
        subprocess.run(["cargo", "build", *flags, "--quiet", "-p", "flip"], cwd=ROOT,
                       check=True, env={**os.environ, "FLIP_VARIANT": v})
        variants[v] = os.path.join(tmp, f"libflip-{v}.so.bin")
        shutil.copy(os.path.join(ROOT, "target", profile, "libflip.so"), variants[v])
    return variants


def ask(sock):
    sock.sendall(b"GET /flip HTTP/1.1\r\nHost: bench\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(4096)
    return body[:length].decode()


def install(content, target, rename):
    if rename:
        staged = os.path.join(os.path.dirname(target), ".libflip.so.partial")
        with open(staged, "wb") as f:
            f.write(content)
        os.rename(staged, target)
    else:
        with open(target, "wb") as f:
            f.write(content)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--rename", action="store_true", help="install by rename instead of cp")
    parser.add_argument("--load", action="store_true", help="run wrk on /flip during the swaps")
    parser.add_argument("--debug", action="store_true", help="the debug build, not release")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mah-reload-") as tmp:
        profile = "debug" if args.debug else "release"
        variants = build(tmp, profile)
        plugins = os.path.join(tmp, "plugins")
        os.makedirs(plugins)
        target = os.path.join(plugins, "libflip.so")
        shutil.copy(variants["a"], target)
        config = os.path.join(tmp, "config.toml")
        with open(config, "w") as f:
            f.write("")
        host = Server("mini-async-http",
                      [os.path.join(ROOT, "target", profile, "mini-async-http"), "--config",
                       config, "--plugins", plugins, "--listen", f"127.0.0.1:{PORT}"], PORT,
                      cwd=tmp)
        contents = {v: open(p, "rb").read() for v, p in variants.items()}
        took = []
        load = None
        try:
            host.start()
            if args.load:
                load = subprocess.Popen(
                    ["wrk", "-t1", "-c16", "-d3600s", "--timeout", "5s", "--latency",
                     f"http://127.0.0.1:{PORT}/flip"], stdout=subprocess.PIPE, text=True,
                    start_new_session=True)
                time.sleep(1)
            sock = socket.create_connection(("127.0.0.1", PORT))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            serving = "a"
            deadline_s = 10
            for _ in range(args.swaps):
                while not ask(sock).startswith(serving):
                    time.sleep(0.01)
                new = "b" if serving == "a" else "a"
                install(contents[new], target, args.rename)
                written = time.monotonic()
                while not ask(sock).startswith(new):
                    if time.monotonic() - written > deadline_s:
                        raise RuntimeError(f"variant {new} not serving after {deadline_s} s")
                took.append((time.monotonic() - written) * 1000)
                serving = new
                time.sleep(0.05 if args.load else 0.2)
            if load:
                load.send_signal(signal.SIGINT)
                loaded = parse_wrk(load.communicate(timeout=30)[0])
        finally:
            if load and load.poll() is None:
                load.kill()
                load.wait()
            host.stop()
    took.sort()
    p90 = took[min(len(took) - 1, int(len(took) * 0.9))]
    how = "rename into place" if args.rename else "write and close (cp)"
    print(f"{args.swaps} swaps, {how}: median {statistics.median(took):.1f} ms, "
          f"p90 {p90:.1f} ms, max {took[-1]:.1f} ms")
    if args.load:
        print(f"under wrk: {loaded['requests']} requests, {loaded['errors']} errors (non-2xx, "
              f"socket errors, timeouts), p50 {loaded['p50_ms']:.2f} ms, "
              f"p99 {loaded['p99_ms']:.2f} ms, max {loaded['max_ms']:.1f} ms")


if __name__ == "__main__":
    main()
