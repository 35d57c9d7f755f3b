#!/usr/bin/env bash
# System packages the test suite needs: a real Docker daemon (docker.io), a
# static busybox to build test images FROM scratch without a registry, and
# docker-compose for the compose scale tests. Installs only what is missing,
# so a second run does nothing; says what it did; fails loudly when it cannot.
set -euo pipefail

PACKAGES=(docker.io busybox-static docker-compose)

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
    exit 0
fi

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
