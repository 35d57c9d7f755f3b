#!/usr/bin/env bash
# System packages the test suite needs: a real Docker daemon (docker.io), a
# static busybox to build test images FROM scratch without a registry,
# docker-compose for the compose scale tests, and Debian's PostgreSQL server
# (postgresql) that the PostgreSQL tests start a throwaway cluster of; plus the
# system user grace-test, which that cluster runs as when the tests run as root
# (PostgreSQL refuses to run as root; tests/pg_server.py). Installs only what is
# missing, so a second run does nothing; says what it did; fails loudly when it
# cannot.
set -euo pipefail

PACKAGES=(docker.io busybox-static docker-compose postgresql)
PG_TEST_USER=grace-test

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for package in "${PACKAGES[@]}"; do
    if ! installed "$package"; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "test-deps: already installed: ${PACKAGES[*]}"
else
    echo "test-deps: missing: ${missing[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "test-deps: cannot install ${missing[*]}: apt-get not found (Debian or Ubuntu needed)" >&2
        exit 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-deps: cannot install ${missing[*]}: run as root (apt-get needs it)" >&2
        exit 1
    fi

    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -qq; then
        echo "test-deps: apt-get update failed: cannot install ${missing[*]}" >&2
        exit 1
    fi
    if ! apt-get install -y -qq "${missing[@]}"; then
        echo "test-deps: apt-get install ${missing[*]} failed" >&2
        exit 1
    fi
    echo "test-deps: installed: ${missing[*]}"
fi

# Debian keeps the server's programs off PATH, in /usr/lib/postgresql/<major>/bin.
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    echo "test-deps: postgresql is installed but no /usr/lib/postgresql/*/bin/initdb exists" >&2
    exit 1
fi

if getent passwd "$PG_TEST_USER" >/dev/null; then
    echo "test-deps: system user $PG_TEST_USER exists"
elif [ "$(id -u)" -ne 0 ]; then
    # Not root: the tests are unprivileged too and run the server as themselves.
    echo "test-deps: no system user $PG_TEST_USER (needed only when the tests run as root)"
else
    if ! useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$PG_TEST_USER"; then
        echo "test-deps: useradd $PG_TEST_USER failed" >&2
        exit 1
    fi
    echo "test-deps: created system user $PG_TEST_USER"
fi
