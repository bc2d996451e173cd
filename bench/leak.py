#!/usr/bin/env python3
"""Does reloading leak? Reloads a stateful plugin with a thread-local destructor many times under load.

`python3 bench/leak.py` builds the release host (`--debug`: the debug one) and the `keeper` fixture
(a counter whose state is handed over exactly on each reload, and which touches a `thread_local!`
with a destructor on every worker), starts the host in a session of its own with a private
TMPDIR, runs wrk on `/keeper` (keep-alive, 16 connections) for `--quiet` seconds without reloads,
and then again while it replaces the plugin file `--reloads` times (10,000 by default), each time
waiting for the host's log line of the new generation. Every tenth of the way it samples the server
process: RSS, mapped regions, keeper images mapped, descriptors, threads, files in TMPDIR.

It prints the samples, wrk's requests, errors and latency with and without reloads, and how long
the hand-over held the plugin's requests (from the log lines). Every process it starts is stopped,
by its id.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time

from run import ROOT, parse_wrk

PORT = 18130
LOADED = re.compile(r"plugin keeper: generation (\d+) loaded")
HELD = re.compile(r"requests held ([\d.]+) ms")


def build(profile):
    flags = ["--release"] if profile == "release" else []
    subprocess.run(["cargo", "build", *flags, "--quiet", "-p", "mini-async-http", "-p", "keeper"],
                   cwd=ROOT, check=True)
    return (os.path.join(ROOT, "target", profile, "mini-async-http"),
            os.path.join(ROOT, "target", profile, "libkeeper.so"))


class Log:
    """Reads the host's log: the last generation loaded, and each swap's hold."""

    def __init__(self, stream):
        self.generation, self.held, self.failed = 0, [], []
        self.cond = threading.Condition()
        threading.Thread(target=self.read, args=(stream,), daemon=True).start()

    def read(self, stream):
        for line in stream:
            line = line.rstrip()
            m = LOADED.search(line)
            with self.cond:
                if m:
                    self.generation = int(m.group(1))
                    held = HELD.search(line)
                    if held:
                        self.held.append(float(held.group(1)))
                    self.cond.notify_all()
                elif "reload from libkeeper.so failed" in line or "ERROR" in line:
                    self.failed.append(line)

    def wait_for(self, generation, timeout=30):
        with self.cond:
            if not self.cond.wait_for(lambda: self.generation >= generation, timeout):
                raise RuntimeError(f"generation {generation} not loaded in {timeout} s; "
                                   f"failures: {self.failed[-3:]}")


def server_pid(supervisor):
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == supervisor:
                        return int(entry)
            except OSError:
                pass
    raise RuntimeError("no server process")


def sample(pid, tmpdir):
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read().splitlines()
    images = {line.split()[5] for line in maps if "keeper.so" in line}
    return {
        "rss_kib": int(status["VmRSS"].split()[0]),
        "maps": len(maps),
        "keeper_images": len(images),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
        "tmp_files": sum(len(files) + len(dirs) for _, dirs, files in os.walk(tmpdir)),
    }


def wrk(seconds):
    return subprocess.Popen(
        ["wrk", "-t1", "-c16", f"-d{seconds}s", "--timeout", "5s", "--latency",
         f"http://127.0.0.1:{PORT}/keeper"], stdout=subprocess.PIPE, text=True,
        start_new_session=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reloads", type=int, default=10_000)
    parser.add_argument("--quiet", type=int, default=20, help="seconds of load without reloads")
    parser.add_argument("--debug", action="store_true", help="the debug build, not release")
    args = parser.parse_args()
    binary, plugin = build("debug" if args.debug else "release")
    with tempfile.TemporaryDirectory(prefix="mah-leak-") as tmp:
        plugins, private = os.path.join(tmp, "plugins"), os.path.join(tmp, "tmp")
        os.makedirs(plugins)
        os.makedirs(private, mode=0o700)
        target = os.path.join(plugins, "libkeeper.so")
        shutil.copy(plugin, target)
        original = open(plugin, "rb").read()
        config = os.path.join(tmp, "config.toml")
        open(config, "w").close()
        host = subprocess.Popen(
            [binary, "--config", config, "--plugins", plugins, "--listen", f"127.0.0.1:{PORT}"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TMPDIR": private, "NO_COLOR": "1"}, start_new_session=True)
        load = None
        try:
            log = Log(host.stderr)
            log.wait_for(1)
            pid = server_pid(host.pid)
            quiet = wrk(args.quiet)
            quiet_result = parse_wrk(quiet.communicate(timeout=args.quiet + 60)[0])
            samples = [(0, sample(pid, private))]
            load = wrk(3600)
            time.sleep(1)
            started = time.monotonic()
            for i in range(1, args.reloads + 1):
                content = original + (b"\0tail" if i % 2 else b"")
                with open(target, "wb") as f:
                    f.write(content)
                log.wait_for(i + 1)
                if i % max(1, args.reloads // 10) == 0:
                    samples.append((i, sample(pid, private)))
            took = time.monotonic() - started
            load.send_signal(signal.SIGINT)
            loaded = parse_wrk(load.communicate(timeout=60)[0])
            # The workers recycled after the last reload have exited by now.
            time.sleep(1)
            samples.append(("1 s later", sample(pid, private)))
        finally:
            if load and load.poll() is None:
                load.kill()
                load.wait()
            if host.poll() is None:
                os.killpg(host.pid, signal.SIGTERM)
                try:
                    host.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(host.pid, signal.SIGKILL)
                    host.wait()
    keys = list(samples[0][1])
    print("| reloads | " + " | ".join(keys) + " |")
    print("| ---: | " + " | ".join("---:" for _ in keys) + " |")
    for n, s in samples:
        print(f"| {n} | " + " | ".join(f"{s[k]:,}" for k in keys) + " |")
    print(f"\n{args.reloads} reloads in {took:.1f} s ({took / args.reloads * 1000:.1f} ms each), "
          f"{len(log.failed)} failed")
    for name, r in (("quiet", quiet_result), ("reloading", loaded)):
        print(f"wrk {name}: {r['requests']:,} requests, {r['errors']} errors, "
              f"{r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
              f"max {r['max_ms']:.1f} ms")
    held = sorted(log.held)
    if held:
        print(f"requests held per swap: median {statistics.median(held):.3f} ms, "
              f"p99 {held[min(len(held) - 1, int(len(held) * 0.99))]:.3f} ms, "
              f"max {held[-1]:.3f} ms ({len(held)} swaps)")


if __name__ == "__main__":
    main()
