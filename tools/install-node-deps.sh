#!/usr/bin/env bash
# Installs the npm packages the server tests drive `mlxcpp server` with (the official `openai`
# client and playwright-core, pinned in tests/server/package.json) into a cache folder outside
# the tree: ${MLXCPP_NODE_DIR:-$HOME/.cache/mlxcpp/node}. Offline-tolerant: an existing install
# of the same package.json is kept; without network the script warns and exits 0 (the tests
# then skip). Prints the folder.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${MLXCPP_NODE_DIR:-$HOME/.cache/mlxcpp/node}"
pkg="$here/tests/server/package.json"
if ! command -v npm >/dev/null 2>&1; then
  echo "install-node-deps: npm not found; the server tests that need it will skip" >&2
  exit 0
fi
mkdir -p "$dir"
if cmp -s "$pkg" "$dir/package.json" && [ -d "$dir/node_modules/openai" ] &&
   [ -d "$dir/node_modules/playwright-core" ]; then
  echo "$dir"
  exit 0
fi
cp "$pkg" "$dir/package.json.new"
mv "$dir/package.json.new" "$dir/package.json"
if ! (cd "$dir" && npm install --no-audit --no-fund --prefer-offline --loglevel=error >&2); then
  echo "install-node-deps: npm install failed (offline?); the server tests that need it will skip" >&2
  rm -f "$dir/package.json"  # so the next run retries
  exit 0
fi
echo "$dir"
