#!/usr/bin/env python3
"""Benchmarks mini-async-http against hyper and nginx, side by side, on loopback.

One command: `python3 bench/run.py` (or `--quick` for a short run). It builds everything in release
mode, installs wrk and nginx from Debian if they are missing, starts each server, and drives the same
load at each in turn, round by round (A B C D, A B C D, ...), waiting for the machine to be idle
before every run. It reports requests per second, latency, errors and the server's CPU time per
request (user + sys from /proc, the figure that ranks servers when wrk itself is the bottleneck),
and writes BENCHMARKS.md and bench/chart.svg. Every server it started is stopped, even on error.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

WORKLOADS = {
    "keep-alive": {"connections": 64, "args": []},
    "pipelined x16": {"connections": 64, "args": ["-s", os.path.join(BENCH, "pipeline.lua")]},
    "connection per request": {"connections": 32, "args": ["-H", "Connection: close"]},
}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("$", " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def ensure_tools():
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx")) if not shutil.which(tool)
               and not os.path.exists("/usr/sbin/" + tool)]
    if missing:
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq"] + missing)


def build():
    run(["cargo", "build", "--release", "--quiet", "-p", "mini-async-http", "-p", "hello"], cwd=ROOT)
    run(["cargo", "build", "--release", "--quiet", "-p", "mini-async-http", "--example",
         "hello_bench"], cwd=ROOT)
    run(["cargo", "build", "--release", "--quiet"], cwd=os.path.join(BENCH, "hyper-hello"))


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(65536, hard) if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


class Server:
    def __init__(self, name, cmd, port, cwd=None):
        self.name, self.cmd, self.port, self.cwd = name, cmd, port, cwd
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=raise_fd_limit,
                                     start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited at start: {self.cmd}")
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start listening on {self.port}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def pids(self):
        """The server process and its children (nginx's workers)."""
        pids = {self.proc.pid}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    if int(fields[1]) == self.proc.pid:
                        pids.add(int(entry))
                except OSError:
                    pass
        return pids

    def cpu_seconds(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except OSError:
                pass
        return total / CLK_TCK

    def rss_kib(self, pids=None):
        """Resident memory of `pids` (default: the server and its children), in KiB."""
        total = 0
        for pid in self.pids() if pids is None else pids:
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * PAGE_KIB
            except OSError:
                pass
        return total


def write_nginx_conf(tmp, port, server, http=""):
    """Writes `tmp/nginx.conf`: two workers, no access log, everything kept in `tmp`, one server on
    127.0.0.1:`port` whose block is `server` (plus `http` lines at the http level). Returns its
    path."""
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(f"""
worker_processes 2;
worker_rlimit_nofile 65536;
daemon off;
error_log {tmp}/nginx-error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    {http}
    client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        {server}
    }}
}}
""")
    return path


def servers(tmp, also=()):
    target = os.path.join(ROOT, "target", "release")
    plugins = os.path.join(tmp, "plugins")
    os.makedirs(plugins, exist_ok=True)
    shutil.copy(os.path.join(target, "libhello.so"), plugins)
    config = os.path.join(tmp, "config.toml")
    with open(config, "w") as f:
        f.write("[limits]\nmax_connections = 20000\n")
    nginx_conf = write_nginx_conf(tmp, 18084, 'default_type text/plain;\n'
                                  '        location / { return 200 "Hello"; }')
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    host = [os.path.join(target, "mini-async-http"), "--config", config, "--plugins", plugins]
    # Other builds of the host binary (an earlier commit, say), run the same way beside this one,
    # each with the libhello.so built beside it when there is one (an earlier ABI's plugin).
    extra = []
    for i, (label, path) in enumerate(also):
        own = os.path.join(os.path.dirname(path), "libhello.so")
        folder = plugins
        if os.path.exists(own):
            folder = os.path.join(tmp, f"plugins-{i}")
            os.makedirs(folder, exist_ok=True)
            shutil.copy(own, folder)
        extra.append(Server(f"mini-async-http ({label})",
                            [path, "--config", config, "--plugins", folder, "--listen",
                             f"127.0.0.1:{18090 + i}", "--workers", "2"], 18090 + i, cwd=tmp))
    return extra + [
        Server("mini-async-http (hello plugin)",
               host + ["--listen", "127.0.0.1:18081", "--workers", "2"], 18081, cwd=tmp),
        Server("mini-async-http (hello plugin, 2 processes)",
               host + ["--listen", "127.0.0.1:18085", "--workers", "1", "--processes", "2"], 18085,
               cwd=tmp),
        Server("mini-async-http (closure)",
               [os.path.join(target, "examples", "hello_bench"), "127.0.0.1:18082", "2"], 18082),
        Server("hyper 1 + tokio", [os.path.join(BENCH, "hyper-hello", "target", "release",
                                                "hyper-hello"), "127.0.0.1:18083"], 18083),
        Server("nginx", [nginx, "-c", nginx_conf, "-p", tmp], 18084),
    ]


def cpu_busy_fraction(interval=0.5):
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]
    t0, i0 = sample()
    time.sleep(interval)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def wait_idle(limit=0.10, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cpu_busy_fraction() < limit:
            return
    log("  (machine not idle after 30 s; running anyway)")


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(out):
    def latency(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value = float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
        # With pipelining wrk sometimes reports a percentile of 0: a measurement it did not make.
        return value if value > 0 else float("nan")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out, re.M)
    max_ms = float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
    return {"requests": requests, "rps": rps, "p50_ms": latency(50), "p99_ms": latency(99),
            "max_ms": max_ms, "errors": errors}


def run_wrk(server, workload, duration):
    spec = WORKLOADS[workload]
    wait_idle()
    cpu0 = server.cpu_seconds()
    cmd = ["wrk", "-t1", f"-c{spec['connections']}", f"-d{duration}s", "--latency"] + spec["args"] + \
        [f"http://127.0.0.1:{server.port}/hello"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    cpu1 = server.cpu_seconds()
    result = parse_wrk(out)
    result["cpu_us_per_request"] = (cpu1 - cpu0) * 1e6 / max(1, result["requests"])
    log(f"  {workload:24} {server.name:32} {result['rps']:>10.0f} req/s  "
        f"p99 {result['p99_ms']:.2f} ms  {result['cpu_us_per_request']:.2f} us/req  "
        f"errors {result['errors']}")
    return result


def idle_memory(server, count):
    """Opens `count` keep-alive connections, each after one request, and reads the RSS growth."""
    raise_fd_limit()
    wait_idle()
    before = server.rss_kib()
    socks, errors = [], 0
    request = b"GET /hello HTTP/1.1\r\nHost: bench\r\n\r\n"
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(request)
            socks.append(s)
        except OSError:
            errors += 1
    for s in socks:
        try:
            data = s.recv(4096)
            if not data.startswith(b"HTTP/1.1 200"):
                errors += 1
        except OSError:
            errors += 1
    time.sleep(1)  # let the server settle its buffers before reading RSS
    after = server.rss_kib()
    alive = 0
    for s in socks:
        try:
            s.sendall(request)
            if s.recv(4096).startswith(b"HTTP/1.1 200"):
                alive += 1
        except OSError:
            pass
        s.close()
    errors += len(socks) - alive
    kib = (after - before) / count
    log(f"  {'idle memory':24} {server.name:32} {kib:>8.2f} KiB/conn  errors {errors}")
    return {"kib_per_connection": kib, "errors": errors, "rss_before_kib": before,
            "rss_after_kib": after}


def med(values):
    return statistics.median(values)


def med_known(values):
    """The median of the values wrk did measure (it reports some pipelined percentiles as 0)."""
    known = [v for v in values if v == v and v > 0]
    return statistics.median(known) if known else float("nan")


def summarize(results):
    table = {}
    for (workload, name), runs in results.items():
        key = "kib_per_connection" if workload == "idle memory" else None
        if key:
            table[(workload, name)] = {
                "kib": med([r[key] for r in runs]),
                "kib_range": (min(r[key] for r in runs), max(r[key] for r in runs)),
                "errors": sum(r["errors"] for r in runs),
            }
        else:
            table[(workload, name)] = {
                "rps": med([r["rps"] for r in runs]),
                "rps_range": (min(r["rps"] for r in runs), max(r["rps"] for r in runs)),
                "p50": med_known([r["p50_ms"] for r in runs]),
                "p99": med_known([r["p99_ms"] for r in runs]),
                "cpu": med([r["cpu_us_per_request"] for r in runs]),
                "cpu_range": (min(r["cpu_us_per_request"] for r in runs),
                              max(r["cpu_us_per_request"] for r in runs)),
                "errors": sum(r["errors"] for r in runs),
            }
    return table


def markdown(table, names, args, started, idle_count):
    hyper = "hyper 1 + tokio"
    lines = [
        "# Benchmarks",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {platform.machine()} Linux "
        f"{platform.release()}, {os.cpu_count()} cores, by `python3 bench/run.py"
        f"{' ' + ' '.join(args) if args else ''}` (see [bench/README.md](bench/README.md)).",
        "Every server answers a 5-byte `Hello` on 127.0.0.1 with 2 workers; wrk runs on the same "
        "machine with one thread. Figures are medians over the rounds, min..max in brackets; "
        "*× hyper* is the ratio to hyper measured in the same run. Latency medians leave out runs "
        "where wrk reported a percentile of 0 (it does with pipelining); `nan` means none was "
        "measured.",
        "",
        "![requests per second and CPU per request](bench/chart.svg)",
        "",
    ]
    for workload in WORKLOADS:
        lines += [f"## {workload}", "",
                  "| server | req/s | × hyper | p50 ms | p99 ms | server CPU µs/req | × hyper | errors |",
                  "|---|---|---|---|---|---|---|---|"]
        ref = table.get((workload, hyper))
        for name in names:
            row = table.get((workload, name))
            if not row:
                continue
            lo, hi = row["rps_range"]
            clo, chi = row["cpu_range"]
            rps_ratio = f"{row['rps'] / ref['rps']:.2f}" if ref else "-"
            cpu_ratio = f"{row['cpu'] / ref['cpu']:.2f}" if ref else "-"
            lines.append(
                f"| {name} | {row['rps']:,.0f} [{lo:,.0f}..{hi:,.0f}] | {rps_ratio} "
                f"| {row['p50']:.3f} | {row['p99']:.3f} | {row['cpu']:.2f} [{clo:.2f}..{chi:.2f}] "
                f"| {cpu_ratio} | {row['errors']} |")
        lines.append("")
    lines += ["## idle keep-alive connections", "",
              f"{idle_count:,} connections opened, one request each, then left idle; growth of "
              "the server's resident memory.", "",
              "| server | KiB per connection | × hyper | errors |", "|---|---|---|---|"]
    ref = table.get(("idle memory", hyper))
    for name in names:
        row = table.get(("idle memory", name))
        if row:
            lo, hi = row["kib_range"]
            ratio = row["kib"] / ref["kib"] if ref and ref["kib"] > 0 else float("nan")
            lines.append(f"| {name} | {row['kib']:.2f} [{lo:.2f}..{hi:.2f}] | {ratio:.2f} | {row['errors']} |")
    lines.append("")
    return "\n".join(lines)


def chart(table, names, path):
    colors = ["#2b6cb0", "#63b3ed", "#c05621", "#2f855a"]
    workloads = list(WORKLOADS)
    panels = [("requests per second (higher is better)", "rps", "{:,.0f}"),
              ("server CPU µs per request (lower is better)", "cpu", "{:.2f}")]
    bar_h, gap, group_gap, label_w, panel_w = 14, 3, 18, 150, 330
    group_h = len(names) * (bar_h + gap) + group_gap
    height = 60 + len(workloads) * group_h + 20 * len(names) + 20
    width = label_w + 2 * (panel_w + 40)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for p, (title, key, fmt) in enumerate(panels):
        x0 = label_w + p * (panel_w + 40)
        out.append(f'<text x="{x0}" y="20" font-weight="bold">{title}</text>')
        top = max((table[(w, n)][key] for w in workloads for n in names if (w, n) in table), default=1)
        for g, workload in enumerate(workloads):
            y0 = 40 + g * group_h
            if p == 0:
                out.append(f'<text x="6" y="{y0 + 2 * (bar_h + gap)}">{workload}</text>')
            for i, name in enumerate(names):
                row = table.get((workload, name))
                if not row:
                    continue
                w = max(1, row[key] / top * (panel_w - 60))
                y = y0 + i * (bar_h + gap)
                out.append(f'<rect x="{x0}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colors[i % 4]}"/>')
                out.append(f'<text x="{x0 + w + 4:.1f}" y="{y + bar_h - 3}">{fmt.format(row[key])}</text>')
    ly = 40 + len(workloads) * group_h
    for i, name in enumerate(names):
        out.append(f'<rect x="{label_w}" y="{ly + i * 20}" width="12" height="12" fill="{colors[i % 4]}"/>')
        out.append(f'<text x="{label_w + 18}" y="{ly + i * 20 + 10}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every run (3)")
    parser.add_argument("--idle-connections", type=int, default=10_000)
    parser.add_argument("--only", action="append", help="run only servers whose name contains this")
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 round, 2000 idle connections")
    parser.add_argument("--no-write", action="store_true", help="print, but do not write BENCHMARKS.md")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=PATH",
                        help="another build of the host binary to run beside (repeatable)")
    parser.add_argument("--render", metavar="WHEN", help="only rewrite BENCHMARKS.md and the chart "
                        "from bench/results.json, measured at WHEN (YYYY-MM-DDTHH:MM)")
    args = parser.parse_args()
    argv = sys.argv[1:]
    if args.render:
        with open(os.path.join(BENCH, "results.json")) as f:
            raw = json.load(f)
        results = {tuple(k.split(" / ", 1)): v for k, v in raw.items()}
        for (workload, _), runs in results.items():
            for r in runs:
                for key in ("p50_ms", "p99_ms"):
                    if key in r and not r[key] > 0:
                        r[key] = float("nan")
        names = list(dict.fromkeys(name for _, name in results))
        idle = args.idle_connections
        started = datetime.datetime.fromisoformat(args.render)
        table = summarize(results)
        with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
            f.write(markdown(table, names, [], started, idle))
        chart(table, names, os.path.join(BENCH, "chart.svg"))
        return
    if args.quick:
        args.duration, args.rounds, args.idle_connections = 3, 1, 2000
    ensure_tools()
    build()
    raise_fd_limit()
    started = datetime.datetime.now(datetime.timezone.utc)
    results = {}
    with tempfile.TemporaryDirectory(prefix="mah-bench-") as tmp:
        all_servers = servers(tmp, [tuple(a.split("=", 1)) for a in args.also])
        chosen = [s for s in all_servers if not args.only or any(o in s.name for o in args.only)]
        try:
            for s in chosen:
                s.start()
            for round_no in range(args.rounds):
                log(f"round {round_no + 1} of {args.rounds}")
                for workload in WORKLOADS:
                    for s in chosen:
                        results.setdefault((workload, s.name), []).append(
                            run_wrk(s, workload, args.duration))
                for s in chosen:
                    results.setdefault(("idle memory", s.name), []).append(
                        idle_memory(s, args.idle_connections))
        finally:
            for s in chosen:
                s.stop()
    names = [s.name for s in chosen]
    table = summarize(results)
    doc = markdown(table, names, argv, started, args.idle_connections)
    print(doc)
    if not args.no_write:
        with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
            f.write(doc)
        chart(table, names, os.path.join(BENCH, "chart.svg"))
        with open(os.path.join(BENCH, "results.json"), "w") as f:
            json.dump({f"{w} / {n}": runs for (w, n), runs in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
