#!/bin/sh
# Builds the host and the example plugins, puts the plugins into plugins/, and serves them with
# config.toml. Extra arguments go to the host (try --help).
set -eu
cd "$(dirname "$0")"
cargo build --release -p mini-async-http -p hello -p counter -p echo -p kv -p static-files -p events
for plugin in hello counter echo kv static_files events; do
    cp "target/release/lib$plugin.so" plugins/
done
exec target/release/mini-async-http --config config.toml "$@"
