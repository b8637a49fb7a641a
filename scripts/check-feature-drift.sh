#!/usr/bin/env bash
# Checks that `cargo build -p hashdrop-server` resolves every dependency with the same
# features as `cargo build --workspace`, so running the server after a workspace build
# reuses the workspace's artifacts instead of rebuilding (Cargo resolves features for
# the selected packages only). Prints each crate whose feature set differs; exit 1 if any.
#
# Fix a difference by naming the crate with the workspace's features in the feature
# alignment block of crates/hashdrop-server/Cargo.toml (the [build-dependencies] block
# for crates only proc macros use).
#
# Usage: scripts/check-feature-drift.sh [PACKAGE]   (default: hashdrop-server)
set -euo pipefail
cd "$(dirname "$0")/.."
pkg="${1:-hashdrop-server}"

# One line per resolved package: "name vX.Y.Z [features]". cargo tree merges a crate's
# run-time and build-time (proc macro) sides when their features agree, so this catches
# most differences, not all; the definitive check is that
#   cargo build --release --workspace && cargo run --release -p hashdrop-server -- --help
# prints no "Compiling" line.
resolved() {
  cargo tree --quiet --locked -e normal,build --prefix none -f '{p} [{f}]' "$@" |
    sed -e 's/ (\*)$//' -e 's/ (proc-macro)//' | sort -u
}

workspace="$(resolved --workspace)"
selected="$(resolved -p "$pkg")"
missing="$(comm -23 <(printf '%s\n' "$selected") <(printf '%s\n' "$workspace") | grep -v '^hashdrop-' || true)"
if [ -n "$missing" ]; then
  echo "cargo build -p $pkg resolves these differently from cargo build --workspace:" >&2
  printf '%s\n' "$missing" | sed 's/^/  -p:        /' >&2
  while IFS= read -r line; do
    name="${line%% *}"
    printf '  workspace: %s\n' "$(printf '%s\n' "$workspace" | grep "^$name v" | tr '\n' ' ')" >&2
  done <<<"$missing"
  exit 1
fi
echo "feature sets of -p $pkg match the workspace"
