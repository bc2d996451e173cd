#!/usr/bin/env python3
"""Bodies that do not fit in memory: does the host's memory stay flat, and is sendfile as cheap as
nginx's?

`python3 bench/bodies.py` builds the release host with the `static-files` and `echo` plugins,
installs wrk and nginx from Debian when missing, and measures:

1. **downloads**: 100 clients download a 1 GiB file from static-files, each reading at 1 MB/s,
   for 30 s: the growth of the server process's resident memory (peak during the run less the
   figure before it). Target: at most 64 MiB.
2. **uploads**: 20 clients each upload 256 MiB to `/echo/hash` (echo reads the body as it
   arrives and answers its length and hash) as fast as they can: the growth of resident memory,
   and every answer's length checked. Target: at most 64 MiB.
3. **a 1 MiB file**: static-files and nginx (`sendfile on`) serving the same file to 64
   keep-alive connections (wrk, one thread), rounds alternating: req/s and server CPU per request
   (user + sys of every process of the server, from /proc). Target: CPU per request no more than
   nginx's.

Every server runs in a session of its own and is stopped by its id, even on error. The results
go to bench/bodies.md (and standard error).
"""

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

from run import (CLK_TCK, ROOT, Server, ensure_tools, log, parse_wrk, wait_idle,
                 write_nginx_conf)

PORT, NGINX_PORT = 18097, 18098
GIB, MIB = 1 << 30, 1 << 20


def build():
    ensure_tools()
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "mini-async-http", "-p",
                    "static-files", "-p", "echo"], cwd=ROOT, check=True)


def host(tmp, www):
    target = os.path.join(ROOT, "target", "release")
    plugins = os.path.join(tmp, "plugins")
    os.makedirs(plugins, exist_ok=True)
    for lib in ("libstatic_files.so", "libecho.so"):
        shutil.copy(os.path.join(target, lib), plugins)
    config = os.path.join(tmp, "config.toml")
    with open(config, "w") as f:
        f.write(f'listen = "127.0.0.1:{PORT}"\nworkers = 2\n'
                "[limits]\nmax_connections = 20000\n\n"
                "[limits.plugins.echo]\nmax_body_bytes = 1073741824\nmax_concurrency = 64\n\n"
                f'[plugins.static_files]\nroot = "{www}"\n\n'
                '[[routes]]\nprefix = "/s"\nplugin = "static_files"\n')
    return Server("mini-async-http (static-files)",
                  [os.path.join(target, "mini-async-http"), "--config", config, "--plugins",
                   plugins, "--workers", "64"], PORT, cwd=tmp)


def nginx(tmp, www):
    conf = write_nginx_conf(tmp, NGINX_PORT, f"location /s/ {{ alias {www}/; }}", "sendfile on;")
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    return Server("nginx (sendfile on)", [binary, "-c", conf, "-p", tmp], NGINX_PORT, cwd=tmp)


def server_rss_kib(server):
    """Resident memory of the host's server process (the supervisor's child)."""
    children = [p for p in server.pids() if p != server.proc.pid]
    return server.rss_kib(children or [server.proc.pid])


class Peak:
    """Samples a server's RSS every 100 ms in a thread; `peak` is the highest seen."""

    def __init__(self, server):
        self.server, self.peak, self.stop = server, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, server_rss_kib(self.server))
            time.sleep(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


async def download(port, rate, seconds):
    """One client: GET the big file, reading at `rate` bytes a second; returns bytes read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(b"GET /s/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    got, start = 0, time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        ahead = got / rate - elapsed
        if ahead > 0:
            await asyncio.sleep(min(ahead, seconds - elapsed))
            continue
        chunk = await reader.read(64 * 1024)
        if not chunk:
            break
        got += len(chunk)
    writer.close()
    return got


async def upload(port, size):
    """One client: POST `size` bytes to /echo/hash as fast as it can; returns the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST /echo/hash HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
                 .encode())
    block = b"x" * MIB
    for _ in range(size // MIB):
        writer.write(block)
        await writer.drain()
    answer = await reader.read(4096)
    writer.close()
    return answer.decode(errors="replace")


def memory_runs(server, clients, seconds, uploads, size):
    wait_idle()
    before = server_rss_kib(server)
    with Peak(server) as peak:
        started = time.monotonic()

        async def all_downloads():
            return await asyncio.gather(*[download(PORT, MIB, seconds) for _ in range(clients)])
        got = asyncio.run(all_downloads())
        took = time.monotonic() - started
    down = {"before_kib": before, "peak_kib": peak.peak, "growth_mib": (peak.peak - before) / 1024,
            "clients": clients, "bytes": sum(got), "seconds": took}
    log(f"  downloads: {clients} clients, {sum(got) / MIB:.0f} MiB in {took:.1f} s, RSS "
        f"{before / 1024:.1f} -> peak {peak.peak / 1024:.1f} MiB (growth "
        f"{down['growth_mib']:.1f} MiB)")

    wait_idle()
    before = server_rss_kib(server)
    with Peak(server) as peak:
        started = time.monotonic()

        async def all_uploads():
            return await asyncio.gather(*[upload(PORT, size) for _ in range(uploads)])
        answers = asyncio.run(all_uploads())
        took = time.monotonic() - started
    right = sum(1 for a in answers if f"\r\n\r\n{size} " in a)
    up = {"before_kib": before, "peak_kib": peak.peak, "growth_mib": (peak.peak - before) / 1024,
          "clients": uploads, "answered_right": right, "seconds": took}
    log(f"  uploads: {uploads} x {size // MIB} MiB in {took:.1f} s, {right} answers right, RSS "
        f"{before / 1024:.1f} -> peak {peak.peak / 1024:.1f} MiB (growth "
        f"{up['growth_mib']:.1f} MiB)")
    return down, up


def machine_jiffies():
    """Busy time of the whole machine and its softirq part, from /proc/stat (clock ticks)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return v[0] + v[1] + v[2] + v[5] + v[6], v[6]


def file_run(server, duration):
    wait_idle()
    cpu0, (busy0, soft0) = server.cpu_seconds(), machine_jiffies()
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{duration}s", "--latency",
                          f"http://127.0.0.1:{server.port}/s/one.bin"],
                         check=True, capture_output=True, text=True).stdout
    cpu1, (busy1, soft1) = server.cpu_seconds(), machine_jiffies()
    result = parse_wrk(out)
    n = max(1, result["requests"])
    result["cpu_us_per_request"] = (cpu1 - cpu0) * 1e6 / n
    result["softirq_us_per_request"] = (soft1 - soft0) / CLK_TCK * 1e6 / n
    result["machine_us_per_request"] = (busy1 - busy0) / CLK_TCK * 1e6 / n
    log(f"  1 MiB file  {server.name:32} {result['rps']:>8.0f} req/s  p99 "
        f"{result['p99_ms']:.2f} ms  server {result['cpu_us_per_request']:.1f} us/req  softirq "
        f"{result['softirq_us_per_request']:.1f}  machine {result['machine_us_per_request']:.1f}  "
        f"errors {result['errors']}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--seconds", type=int, default=30, help="seconds of downloads")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--upload-mib", type=int, default=256)
    args = parser.parse_args()
    build()
    with tempfile.TemporaryDirectory() as tmp:
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "big.bin"), "wb") as f:
            f.truncate(GIB)
        with open(os.path.join(www, "one.bin"), "wb") as f:
            f.write(os.urandom(MIB))
        servers = [host(tmp, www), nginx(tmp, www)]
        try:
            for s in servers:
                s.start()
            down, up = memory_runs(servers[0], args.clients, args.seconds, args.uploads,
                                   args.upload_mib * MIB)
            results = {s.name: [] for s in servers}
            for r in range(args.rounds):
                log(f"round {r + 1} of {args.rounds}")
                for s in servers:
                    results[s.name].append(file_run(s, args.duration))
            lines = ["| server | req/s | p99 ms | server CPU µs/req | softirq µs/req | "
                     "server + softirq | whole machine µs/req | errors |",
                     "|---|---|---|---|---|---|---|---|"]
            base = None
            for name, runs in results.items():
                def med(key):
                    return statistics.median(r[key] for r in runs)
                cpu, soft, machine = (med("cpu_us_per_request"), med("softirq_us_per_request"),
                                      med("machine_us_per_request"))
                errors = sum(r["errors"] for r in runs)
                base = base or (cpu, soft, machine)
                lines.append(f"| {name} | {med('rps'):,.0f} | {med('p99_ms'):.2f} | {cpu:.1f} "
                             f"({cpu / base[0]:.2f}×) | {soft:.1f} | {cpu + soft:.1f} "
                             f"({(cpu + soft) / (base[0] + base[1]):.2f}×) | {machine:.1f} "
                             f"({machine / base[2]:.2f}×) | {errors} |")
            when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            report = f"""# Large bodies

Measured {when} on {platform.machine()} Linux {platform.release()}, {os.cpu_count()} cores, by
`python3 bench/bodies.py` (release build, loopback, the host with 64 workers).

## Memory

| run | transferred | resident memory before → peak | growth | target |
|---|---|---|---|---|
| {down['clients']} downloads of a 1 GiB file at 1 MB/s, {args.seconds} s | \
{down['bytes'] / MIB:,.0f} MiB | {down['before_kib'] / 1024:.1f} → {down['peak_kib'] / 1024:.1f} MiB | \
{down['growth_mib']:.1f} MiB | ≤ 64 MiB |
| {up['clients']} uploads of {args.upload_mib} MiB to `/echo/hash` ({up['answered_right']} answered \
right, {up['seconds']:.1f} s) | {up['clients'] * args.upload_mib:,} MiB | \
{up['before_kib'] / 1024:.1f} → {up['peak_kib'] / 1024:.1f} MiB | {up['growth_mib']:.1f} MiB | ≤ 64 MiB |

## A 1 MiB file, 64 keep-alive connections

Medians of {args.rounds} rounds of {args.duration} s, servers alternating. *Server CPU* is user +
sys of every process of the server; *softirq* is the machine's time in network soft interrupts
(accounted to no process), *whole machine* everything busy (server, wrk, kernel), all per
response. On loopback the receiving side's network work runs in the sender's system calls or in
soft interrupts, depending on how the sender packs its data, so the server column alone can
mislead: compare the last two as well. Ratios are to the first row.

""" + "\n".join(lines) + "\n"
            with open(os.path.join(ROOT, "bench", "bodies.md"), "w") as f:
                f.write(report)
            log(report)
        finally:
            for s in servers:
                s.stop()


if __name__ == "__main__":
    main()
