#!/usr/bin/env bash
# Flamegraph of the edge's relay path under load, on loopback:
#   scripts/flamegraph.sh [SECONDS] [OUT.svg]        (defaults: 20 s, target/flamegraph/edge-relay.svg)
# Starts the simulated CSE (`m2m-loadgen cse`) and the edge in front of it (`m2m-loadgen edge run`,
# one worker), drives it with a closed-loop m2m-loadgen scenario (200 devices x 4 in flight, mixed
# operations, NOTIFYs on), records the edge with `perf record -g` (Debian linux-perf), and renders the
# SVG with inferno. Where perf events are not allowed (perf_event_paranoid, containers), it falls back
# to the in-process sampling profiler (`pprof`, the edge built with `--features pprof`, enabled by
# M2M_EDGE_PPROF). Prints the hottest frames (self time) of the relay path at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
out=${2:-target/flamegraph/edge-relay.svg}
mkdir -p "$(dirname "$out")"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

if ! command -v inferno-flamegraph >/dev/null 2>&1; then
  echo "== installing inferno (flamegraph renderer)"
  cargo install --locked -q inferno
fi
use_perf=1
if ! command -v perf >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null 2>&1 || true
fi
if ! command -v perf >/dev/null 2>&1 || ! perf record -q -o "$work/probe.data" -- true >/dev/null 2>&1; then
  echo "== perf events are not available here: using the in-process pprof sampler"
  use_perf=0
fi
features=()
[ "$use_perf" = 0 ] && features=(--features m2m-loadgen/pprof)
cargo build --release -q -p m2m-loadgen "${features[@]}"
bin=target/release/m2m-loadgen

"$bin" cse --listen 127.0.0.1:0 --workers 1 > "$work/cse.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$work/cse.out" && break; sleep 0.1; done
cse=$(awk '/listening/ {print $2}' "$work/cse.out")
edge_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
M2M_EDGE_PPROF=$([ "$use_perf" = 0 ] && echo "$out" || echo "") RUST_LOG=warn \
  "$bin" edge run --listen "127.0.0.1:$edge_port" --upstream "ws://$cse/" --workers 1 --max-in-flight 16 &
edge_pid=$!
pids+=($edge_pid)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$edge_port") 2>/dev/null && break; sleep 0.1; done

"$bin" run --quiet --target "ws://127.0.0.1:$edge_port/" --devices 200 --mode closed --in-flight 4 \
  --duration "$((seconds + 4))s" --out "$work/load" > "$work/load.txt" 2>&1 &
load_pid=$!
sleep 3
if [ "$use_perf" = 1 ]; then
  perf record -q -F 1999 -g --call-graph dwarf,16384 -p "$edge_pid" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null
  perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf > "$work/stacks.folded"
fi
wait "$load_pid"
kill -TERM "$edge_pid"; wait "$edge_pid" 2>/dev/null || true
if [ "$use_perf" = 1 ]; then
  cp "$work/stacks.folded" "${out%.svg}.folded"
  # Frames under 0.2 % of the width are left out: the picture stays readable and small.
  inferno-flamegraph --minwidth 0.2 --title "m2m-edge relay path ($seconds s, 200 devices x 4 in flight, closed loop)" \
    < "$work/stacks.folded" > "$out"
  echo "== hottest frames (self time, % of edge samples)"
  awk '{n=$NF; $NF=""; sub(/ $/,""); k=split($0,f,";"); self[f[k]]+=n; total+=n}
       END {for (s in self) printf "%6.2f%%  %s\n", 100*self[s]/total, s}' "$work/stacks.folded" \
    | sort -rn | head -25
fi
grep -E "all_ops|operations" "$work/load.txt" || true
echo "== flamegraph: $out"
