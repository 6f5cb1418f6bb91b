#!/usr/bin/env bash
# Flamegraphs of petrel under the standard loadgen load (the README's Profiling recipe).
#
#   loadgen/scripts/flamegraph.sh OUT_DIR [SYNC_FLUSH|ASYNC_FLUSH ...]
#
# Needs: perf, inferno-collapse-perf and inferno-flamegraph on PATH (cargo install inferno),
# and `cargo build --profile profiling -p broker -p loadgen` done. Env: RATE (20000),
# STORE_ROOT (/var/tmp), RECORD_SECONDS (15).
set -euo pipefail

OUT=$1; shift
MODES=${*:-"SYNC_FLUSH ASYNC_FLUSH"}
RATE=${RATE:-20000}
STORE_ROOT=${STORE_ROOT:-/var/tmp}
RECORD_SECONDS=${RECORD_SECONDS:-15}
BIN=${BIN:-target/profiling}
mkdir -p "$OUT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for mode in $MODES; do
    lower=$(echo "$mode" | tr 'A-Z' 'a-z')
    store=$(mktemp -d "$STORE_ROOT/petrel-prof-XXXXXX")
    port=$(( $(free_port) ))
    ns_port=$(free_port)
    "$BIN/petrel" --listen-port "$port" --namesrv-listen-port "$ns_port" --store-dir "$store" \
        --flush-disk-type "$mode" --broker-ip1 127.0.0.1 --bind-address 127.0.0.1 \
        --set mappedFileSizeCommitLog=268435456 --set diskSpaceWarningLevelRatio=0.99 \
        --set diskMaxUsedSpaceRatio=95 > "$OUT/petrel-$lower.log" 2>&1 &
    petrel=$!
    sleep 3
    duration=$(( RECORD_SECONDS + 8 ))
    "$BIN/loadgen" produce --namesrv "127.0.0.1:$ns_port" --rate "$RATE" --connections 8 \
        --max-in-flight 32 --duration "${duration}s" --warmup 2s --floor-dir none \
        --out "$OUT/load-$lower" > "$OUT/load-$lower.txt" 2>&1 &
    load=$!
    sleep 4
    perf record -F 999 -g --call-graph dwarf,16384 -p "$petrel" -o "$OUT/perf-$lower.data" \
        -- sleep "$RECORD_SECONDS" 2> "$OUT/perf-$lower.txt"
    wait "$load" || true
    kill "$petrel"; wait "$petrel" || true
    rm -rf "$store"
    perf script -i "$OUT/perf-$lower.data" 2>/dev/null | inferno-collapse-perf > "$OUT/petrel-$lower.folded"
    inferno-flamegraph --title "petrel $mode, loadgen produce $RATE msg/s (8 conns x 32 in flight)" \
        < "$OUT/petrel-$lower.folded" > "$OUT/flamegraph-$lower.svg"
    rm -f "$OUT/perf-$lower.data"
    echo "$OUT/flamegraph-$lower.svg"
done
