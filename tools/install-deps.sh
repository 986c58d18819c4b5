#!/usr/bin/env bash
# Installs the Debian 12 packages mlxcpp builds and tests with.
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build ccache pkg-config python3 python3-numpy python3-jinja2 xz-utils
  libopenblas-dev liblapacke-dev nlohmann-json3-dev libfmt-dev zlib1g-dev
  libpcre2-dev libutf8proc-dev liblzma-dev libcli11-dev libcpp-httplib-dev libcurl4-openssl-dev libstb-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# The server's end-to-end tests: Node.js with npm and Chromium (checked by command, since Node.js
# may come from elsewhere with its own npm). Not fatal: those tests skip without them.
tools=()
command -v node >/dev/null 2>&1 || tools+=(nodejs)
command -v npm >/dev/null 2>&1 || tools+=(npm)
command -v chromium >/dev/null 2>&1 || tools+=(chromium)
if [ ${#tools[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${tools[@]}" ||
    echo "install-deps: could not install ${tools[*]}; the server's end-to-end tests will skip" >&2
fi
# npm packages of the server tests (openai client, playwright-core), cached outside the tree.
"$(dirname "${BASH_SOURCE[0]}")/install-node-deps.sh" >/dev/null || true
