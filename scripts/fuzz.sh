#!/usr/bin/env bash
# Run every fuzz target for SECONDS (default 10) from the checked-in seeds and print the executions
# each made. cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on the stable toolchain.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-10}
shift || true
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -O "${targets[@]}" >/dev/null 2>&1 || cargo fuzz build -O
printf '%-18s %12s %8s\n' target executions seconds
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  if ! cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 >"$log" 2>&1; then
    grep -A8 -m1 "panicked" "$log" || true
    grep -A3 -m1 "Failing input" "$log" || tail -n 40 "$log"
    echo "fuzz target $t failed" >&2
    exit 1
  fi
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' | tail -n 1)
  printf '%-18s %12s %8s\n' "$t" "${runs:-?}" "$seconds"
  rm -f "$log"
done
