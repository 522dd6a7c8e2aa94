#!/bin/sh
# Install what the benchmark needs on top of scripts/deps.sh (Debian 12):
# wrk, and redis-benchmark (redis-tools). Fast no-op when present.
set -eu
missing=""
for pkg in wrk redis-tools; do
    case "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" in
        *"install ok installed"*) ;;
        *) missing="$missing $pkg" ;;
    esac
done
[ -z "$missing" ] && exit 0
echo "bench: installing$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "bench: not root and no sudo; install:$missing" >&2; exit 1; }
    SUDO="sudo"
fi
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
