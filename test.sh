#!/bin/sh
# Runs the whole test suite (README's test command). Installs what the tests need when it is
# missing, from Debian's packages: chromium (the status page is checked in a real headless
# browser), a C compiler (the C example plugin is built and served), systemd's
# systemd-socket-activate (socket activation is tested with it) and HAProxy (three hosts are
# tested behind it). Extra arguments go to `cargo test`.
set -eu
cd "$(dirname "$0")"
need=""
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v cc >/dev/null 2>&1 || need="$need gcc libc6-dev"
command -v systemd-socket-activate >/dev/null 2>&1 || need="$need systemd"
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need="$need haproxy"
if [ -n "$need" ]; then
    echo "test.sh: installing$need" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq $need >/dev/null
fi
exec cargo test --workspace "$@"
