#!/usr/bin/env python3
"""One client pipelining deep: what do the other clients' latencies pay for it?

`python3 bench/fairness.py` builds the release host with the `hello` plugin, starts it (in a
session of its own) with `--workers 1` (`--workers N` to change), and measures, side by side in
one run:

1. **quiet**: wrk on `/hello`, keep-alive, 16 connections, one thread, alone;
2. **loaded**: the same, while a second wrk pipelines on one connection (`bench/pipeline.lua`,
   `--depth` requests per write, 1024 by default: each batch is a run of full reads, which the
   worker answered in one turn before `TURN_REQUESTS` capped a turn).

With `--also LABEL=PATH` (repeatable) other builds of the host binary run the same rounds beside
this one (an earlier commit's, say; the `libhello.so` built beside it when there is one). Rounds
alternate servers and runs; it prints the medians of the keep-alive clients' req/s, p50 and p99,
and the pipelining client's req/s, as a markdown table. Every process it starts is stopped, by its
id, even on error.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from run import BENCH, ROOT, Server, ensure_tools, log, parse_wrk, raise_fd_limit, wait_idle

PORT = 18100


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "mini-async-http", "-p",
                    "hello"], cwd=ROOT, check=True)


def hosts(tmp, workers, also):
    """This build's host and each `--also` build, each with the `hello` built beside it."""
    builds = [("this build", os.path.join(ROOT, "target", "release", "mini-async-http"))]
    builds += [tuple(a.split("=", 1)) for a in also]
    config = os.path.join(tmp, "config.toml")
    with open(config, "w") as f:
        f.write("[limits]\nmax_connections = 20000\n")
    out = []
    for i, (label, binary) in enumerate(builds):
        plugins = os.path.join(tmp, f"plugins-{i}")
        os.makedirs(plugins, exist_ok=True)
        shutil.copy(os.path.join(os.path.dirname(binary), "libhello.so"), plugins)
        port = PORT + i
        out.append(Server(f"mini-async-http ({label})",
                          [binary, "--config", config, "--plugins", plugins, "--listen",
                           f"127.0.0.1:{port}", "--workers", str(workers)], port, cwd=tmp))
    return out


def wrk(port, connections, duration, extra=()):
    return ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *extra,
            f"http://127.0.0.1:{port}/hello"]


def measure(server, duration, depth):
    """One quiet and one loaded run of the keep-alive clients; the pipeliner's figures too."""
    wait_idle()
    quiet = parse_wrk(subprocess.run(wrk(server.port, 16, duration), check=True,
                                     capture_output=True, text=True).stdout)
    wait_idle()
    # The pipeliner starts first and ends after: the keep-alive run is inside it throughout.
    pipeliner = subprocess.Popen(
        wrk(server.port, 1, duration + 2, ["-s", os.path.join(BENCH, "pipeline.lua")]) +
        ["--", str(depth)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        time.sleep(1)
        loaded = parse_wrk(subprocess.run(wrk(server.port, 16, duration), check=True,
                                          capture_output=True, text=True).stdout)
        piped = parse_wrk(pipeliner.communicate(timeout=duration + 30)[0])
    finally:
        if pipeliner.poll() is None:
            pipeliner.kill()
            pipeliner.wait()
    log(f"  {server.name:36} quiet {quiet['rps']:>8.0f} req/s p99 {quiet['p99_ms']:.2f} ms | "
        f"loaded {loaded['rps']:>8.0f} req/s p50 {loaded['p50_ms']:.2f} ms "
        f"p99 {loaded['p99_ms']:.2f} ms | pipeliner {piped['rps']:>8.0f} req/s")
    return {"quiet": quiet, "loaded": loaded, "pipeliner": piped}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument("--workers", type=int, default=1, help="the host's workers (1)")
    parser.add_argument("--depth", type=int, default=1024, help="requests per pipelined write")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=PATH",
                        help="another build of the host binary to run beside (repeatable)")
    args = parser.parse_args()
    ensure_tools()
    build()
    raise_fd_limit()
    results = {}
    with tempfile.TemporaryDirectory(prefix="mah-fairness-") as tmp:
        servers = hosts(tmp, args.workers, args.also)
        try:
            for s in servers:
                s.start()
            for round_no in range(args.rounds):
                log(f"round {round_no + 1} of {args.rounds}")
                for s in servers:
                    results.setdefault(s.name, []).append(measure(s, args.duration, args.depth))
        finally:
            for s in servers:
                s.stop()

    def med(runs, run, key):
        return statistics.median(r[run][key] for r in runs)

    print(f"`--workers {args.workers}`, pipelining depth {args.depth}, {args.rounds} rounds of "
          f"{args.duration} s; medians.\n")
    print("| server | quiet req/s | quiet p99 | loaded req/s | loaded p50 | loaded p99 "
          "| pipeliner req/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, runs in results.items():
        print(f"| {name} | {med(runs, 'quiet', 'rps'):,.0f} | {med(runs, 'quiet', 'p99_ms'):.2f} ms "
              f"| {med(runs, 'loaded', 'rps'):,.0f} | {med(runs, 'loaded', 'p50_ms'):.2f} ms "
              f"| {med(runs, 'loaded', 'p99_ms'):.2f} ms | {med(runs, 'pipeliner', 'rps'):,.0f} |")


if __name__ == "__main__":
    main()
