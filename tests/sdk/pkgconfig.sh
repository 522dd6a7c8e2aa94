#!/bin/sh
# Part of `make sdk-test`: build an agent the way a user does, with nothing
# but what pkg-config says, and run it:
#   1. against the build tree (PKG_CONFIG_PATH=BUILD_DIR finds
#      costmesh-uninstalled.pc), the library found through its rpath;
#   2. against `make sdk-install PREFIX=PREFIX`, shared;
#   3. the same install, libcostmesh.a linked in (docs/sdk.md).
# Each program must link the library it was pointed at and report the
# version its .pc announces.
#
#   CC=cc PROG_FLAGS=... sh tests/sdk/pkgconfig.sh BUILD_DIR PREFIX
#
# PROG_FLAGS: what a program linking this build needs besides pkg-config's
# flags (the sanitizer's, when the library was built with one).
set -eu

BUILD_DIR=$(cd "$1" && pwd)
PREFIX=$2
CC=${CC:-cc}
PROG_FLAGS=${PROG_FLAGS:-}

fail() { echo "sdk-test: pkg-config: $*" >&2; exit 1; }

work=$(mktemp -d /tmp/cm-sdk-pc.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/agent.c" <<'EOF'
#include <costmesh.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    /* A header from one place and a library from another would differ here. */
    if (strcmp(cm_version(), CM_VERSION_STRING) != 0) {
        fprintf(stderr, "header %s, library %s\n", CM_VERSION_STRING, cm_version());
        return 1;
    }
    puts(cm_version());
    return 0;
}
EOF

# build NAME CC-ARGS...: compile agent.c into $work/NAME.
build() {
    name=$1
    shift
    # shellcheck disable=SC2086
    $CC $PROG_FLAGS -o "$work/$name" "$work/agent.c" "$@" || fail "$name: does not compile and link"
}

# run NAME LIBDIR: NAME prints the .pc's version, and loads libcostmesh
# from LIBDIR, or none at all when LIBDIR is "none".
run() {
    got=$("$work/$1") || fail "$1: exits non-zero"
    [ "$got" = "$(pkg-config --modversion costmesh)" ] \
        || fail "$1: reports version '$got', its .pc says $(pkg-config --modversion costmesh)"
    loaded=$(ldd "$work/$1" | awk '/libcostmesh/ {print $3}')
    if [ "$2" = none ]; then
        [ -z "$loaded" ] || fail "$1: should hold libcostmesh.a, loads $loaded"
    elif [ -z "$loaded" ] || [ "$(dirname "$loaded")" != "$2" ]; then
        fail "$1: loads '$loaded', not from $2"
    fi
}

export PKG_CONFIG_PATH="$BUILD_DIR"
pkg-config --uninstalled costmesh || fail "PKG_CONFIG_PATH=$BUILD_DIR does not find costmesh-uninstalled.pc"
# shellcheck disable=SC2046
build tree $(pkg-config --cflags --libs costmesh)
run tree "$BUILD_DIR"

export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
[ "$(pkg-config --variable=prefix costmesh)" = "$PREFIX" ] \
    || fail "the installed costmesh.pc says prefix=$(pkg-config --variable=prefix costmesh), not $PREFIX"
# shellcheck disable=SC2046
build installed $(pkg-config --cflags --libs costmesh)
export LD_LIBRARY_PATH="$PREFIX/lib"
run installed "$PREFIX/lib"
# shellcheck disable=SC2046
build static $(pkg-config --cflags costmesh) "$(pkg-config --variable=libdir costmesh)/libcostmesh.a" \
    $(pkg-config --libs libcurl json-c) -lpthread -lm
run static none

echo "sdk-test: pkg-config: built and ran against the build tree, $PREFIX (shared) and $PREFIX (static)"
