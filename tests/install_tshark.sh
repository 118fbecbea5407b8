#!/bin/sh
# Called by `make test`: install tshark for tests/e2e/test_wireshark.py when it is
# missing and this machine allows it (root and apt-get, non-interactive).
# Never fails the build: without tshark those tests skip and say why.
set -u
say() { echo "install_tshark: $*"; }

if command -v tshark >/dev/null 2>&1; then
    say "tshark present: $(tshark --version 2>/dev/null | head -n 1)"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "tshark missing; installing it needs root and apt-get: the Wireshark tests will skip"
    exit 0
fi
say "installing tshark with apt-get (non-interactive)"
# wireshark-common asks whether non-root users may capture: answer no, silently.
echo "wireshark-common wireshark-common/install-setuid boolean false" \
    | debconf-set-selections 2>/dev/null || true
if DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null; then
    say "installed: $(tshark --version 2>/dev/null | head -n 1)"
else
    say "apt-get failed: the Wireshark tests will skip"
fi
exit 0
