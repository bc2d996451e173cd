#!/bin/sh
# Runs every fuzz target for SECONDS each (default 600), one after the other, from the seed corpus
# in corpus/ (new inputs found are added there). Needs cargo-fuzz: `cargo install cargo-fuzz`.
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept the sanitizer flags cargo-fuzz passes.
set -eu
cd "$(dirname "$0")"
seconds=${1:-600}
for target in parse_head bodies config; do
    echo "== $target: ${seconds} s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        2>&1 | grep -E "^(#[0-9]+ +DONE|Done|==[0-9]+==|SUMMARY|INFO: seed)|panicked|stat::" || true
done
