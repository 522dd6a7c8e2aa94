#!/bin/sh
# Install the build and runtime dependencies of costmesh with apt (Debian 12).
# Fast no-op when everything is already installed. Idempotent.
set -eu

PACKAGES="build-essential pkg-config libmicrohttpd-dev libhiredis-dev libuv1-dev
libjson-c-dev libpq-dev libssl-dev libcurl4-openssl-dev redis-server postgresql
python3 python3-yaml curl clang libclang-rt-14-dev nodejs chromium
libprotobuf-c-dev protobuf-c-compiler zlib1g-dev python3-protobuf nginx git"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "deps: all packages present"
    exit 0
fi

echo "deps: installing missing packages:$missing"

if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: apt-get not found; install manually:$missing" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "deps: not root and sudo is unavailable; run as root or install:$missing" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
echo "deps: done"
