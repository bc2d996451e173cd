#!/usr/bin/env python3
"""Crash containment under load: wrk on /hello while another client crashes a plugin every second.

`python3 bench/crash.py` builds the release host with the `hello` plugin and the `chaos` fixture,
then for `processes = 1` and `processes = 2`:

1. **crashes**: quarantine off (`[quarantine] crashes = 0`), wrk on `/hello` (keep-alive, 64
   connections, 30 s) while a crasher asks `/chaos/segv` once a second, and a probe asks `/hello`
   back to back on one connection of its own (reconnecting when it breaks) to find the longest time
   without an answer;
2. **quarantined**: quarantine on (the default, 3 crashes in 60 s): three crashes first, then the
   same 30 s of wrk while the crasher goes on asking (and gets 503).

It prints wrk's requests and errors by kind (connect, read, write, timeout, non-2xx), the crashes
the host logged, the probe's longest gap between two answers and its longest recovery (from its
connection breaking with its process to the next answer), and the connections each server process
held (from the admin `/status`). The quarantined run has no crash during wrk: its gap is what the
machine's scheduling alone gives under this load, the baseline for the other gaps. Every process it starts is stopped, by its id, even on error.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT, ADMIN = 18091, 18092
REQUEST = b"GET /hello HTTP/1.1\r\nHost: bench\r\n\r\n"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def build():
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "mini-async-http", "-p",
                    "hello", "-p", "chaos"], cwd=ROOT, check=True)


def start(tmp, processes, quarantine):
    target = os.path.join(ROOT, "target", "release")
    plugins = os.path.join(tmp, "plugins")
    shutil.rmtree(plugins, ignore_errors=True)
    os.makedirs(plugins)
    for lib in ("libhello.so", "libchaos.so"):
        shutil.copy(os.path.join(target, lib), plugins)
    config = os.path.join(tmp, "config.toml")
    with open(config, "w") as f:
        f.write(f'listen = "127.0.0.1:{PORT}"\nprocesses = {processes}\nworkers = 2\n'
                f'[admin]\nlisten = "127.0.0.1:{ADMIN}"\n'
                f'[quarantine]\ncrashes = {3 if quarantine else 0}\n')
    logfile = open(os.path.join(tmp, f"host-{processes}-{quarantine}.log"), "w+")
    proc = subprocess.Popen([os.path.join(target, "mini-async-http"), "--config", config],
                            cwd=tmp, stdout=subprocess.DEVNULL, stderr=logfile,
                            start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if b"Hello" in get("/hello"):
                return proc, logfile
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the host did not start")


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(path, port=PORT, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def held_connections():
    """Open connections per serving process, from the admin status."""
    try:
        body = get("/status", ADMIN).split(b"\r\n\r\n", 1)[1]
        return [p["open_connections"] for p in json.loads(body)["processes"]]
    except (OSError, ValueError, KeyError, IndexError):
        return []


class Probe(threading.Thread):
    """Asks /hello back to back on one keep-alive connection; records the longest gap between two
    answers, and the longest recovery: from its connection breaking (its process died) to the next
    answer on a new one."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.gap, self.recovery, self.answers, self.broken = False, 0.0, 0.0, 0, 0

    def run(self):
        last, sock, broke = time.monotonic(), None, None
        while not self.stop:
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", PORT), timeout=10)
                sock.sendall(REQUEST)
                data = b""
                while not data.endswith(b"Hello"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise OSError("closed")
                    data += chunk
                now = time.monotonic()
                self.gap = max(self.gap, now - last)
                if broke is not None:
                    self.recovery = max(self.recovery, now - broke)
                    broke = None
                last = now
                self.answers += 1
            except OSError:
                broke = broke or time.monotonic()
                self.broken += 1
                if sock:
                    sock.close()
                sock = None


class Crasher(threading.Thread):
    """Asks /chaos/segv once a second; counts how each ask ended."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.crashed, self.refused, self.held = False, 0, 0, []

    def run(self):
        while not self.stop:
            self.held.append(held_connections())
            try:
                reply = get("/chaos/segv", timeout=10)
                if reply.startswith(b"HTTP/1.1 503"):
                    self.refused += 1
                else:
                    self.crashed += 1
            except OSError:
                self.crashed += 1
            time.sleep(1)


def wrk(duration):
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{duration}s", "--latency",
                          f"http://127.0.0.1:{PORT}/hello"], capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = dict(zip(("connect", "read", "write", "timeout"),
                      (int(g) for g in m.groups()) if m else (0, 0, 0, 0)))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors["non-2xx"] = int(m.group(1)) if m else 0
    return requests, errors


def scenario(tmp, processes, quarantine, duration):
    proc, logfile = start(tmp, processes, quarantine)
    try:
        if quarantine:
            for _ in range(3):
                try:
                    get("/chaos/segv")
                except OSError:
                    pass
                deadline = time.time() + 10
                while time.time() < deadline:
                    try:
                        if b"200 OK" in get("/chaos/x") or b"quarantined" in get("/chaos/x"):
                            break
                    except OSError:
                        time.sleep(0.02)
        probe, crasher = Probe(), Crasher()
        probe.start()
        crasher.start()
        requests, errors = wrk(duration)
        crasher.stop = probe.stop = True
        crasher.join()
        probe.join()
    finally:
        stop(proc)
    logfile.seek(0)
    text = logfile.read()
    crashes = [line for line in text.splitlines() if "crashed server process" in line]
    held = [sum(h) / len(h) for h in crasher.held if h]
    result = {
        "processes": processes,
        "quarantine": quarantine,
        "requests": requests,
        "errors": errors,
        "failed": sum(errors.values()),
        "crashes_logged": len(crashes),
        "crash_asks": crasher.crashed,
        "quarantined_503": crasher.refused,
        "longest_gap_ms": round(probe.gap * 1000, 1),
        "longest_recovery_ms": round(probe.recovery * 1000, 1),
        "probe_answers": probe.answers,
        "probe_broken": probe.broken,
        "connections_per_process": round(sum(held) / len(held), 1) if held else None,
        "example": crashes[-1].split(": ", 1)[-1] if crashes else None,
    }
    log(json.dumps(result, indent=2))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=30, help="seconds of wrk per scenario")
    parser.add_argument("--processes", type=int, action="append", help="1 and 2 by default")
    args = parser.parse_args()
    build()
    results = []
    with tempfile.TemporaryDirectory(prefix="mah-crash-") as tmp:
        for processes in args.processes or [1, 2]:
            for quarantine in (False, True):
                results.append(scenario(tmp, processes, quarantine, args.duration))
    print("| processes | quarantine | /hello served | failed (connect/read/write/timeout/non-2xx) "
          "| crashes | failed per crash | connections per process | longest gap | longest recovery |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        e = r["errors"]
        kinds = "/".join(str(e[k]) for k in ("connect", "read", "write", "timeout", "non-2xx"))
        per = r["failed"] / r["crashes_logged"] if r["crashes_logged"] else 0
        print(f"| {r['processes']} | {'on (503 after 3)' if r['quarantine'] else 'off'} "
              f"| {r['requests']:,} | {r['failed']} ({kinds}) | {r['crashes_logged']} "
              f"| {per:.1f} | {r['connections_per_process']} | {r['longest_gap_ms']} ms "
              f"| {r['longest_recovery_ms']} ms |")


if __name__ == "__main__":
    main()
