#!/bin/sh
# Builds the host and the example plugins (the C one with the system C compiler), puts the plugins into plugins/, and serves them with
# config.toml. Extra arguments go to the host (try --help).
set -eu
cd "$(dirname "$0")"
cargo build --release -p mini-async-http -p hello -p counter -p echo -p kv -p static-files -p events
for plugin in hello counter echo kv static_files events; do
    cp "target/release/lib$plugin.so" plugins/
done
# The C example, with the system C compiler, against the generated header.
"${CC:-cc}" -std=c11 -O2 -fPIC -shared -I plugin-api/include -o plugins/libc_greeter.so \
    plugins/c-greeter/greeter.c
exec target/release/mini-async-http --config config.toml "$@"
