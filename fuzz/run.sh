#!/bin/sh
# Runs every fuzz target for SECONDS each (default 600), one after the other, from the seed corpus
# in corpus/ (new inputs found are added there). Needs cargo-fuzz: `cargo install cargo-fuzz`.
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept the sanitizer flags cargo-fuzz passes.
set -eu
cd "$(dirname "$0")"
seconds=${1:-600}
shift || true
targets=${*:-parse_head bodies config responses}
for target in $targets; do
    echo "== $target: ${seconds} s"
    log="target/$target.log"
    mkdir -p target
    if RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        grep -E "^Done|stat::number_of_executed_units|stat::peak_rss_mb" "$log"
    else
        tail -n 40 "$log"
        exit 1
    fi
done
