#!/usr/bin/env bash
# Petrel and a peer broker (rocketmq-rust's rocketmq-broker-rust + rocketmq-namesrv-rust 1.0.0),
# measured in one session with the same loadgen settings, the same flush mode, the same
# filesystem and the same network namespace (only `lo`), one broker at a time.
#
#   loadgen/scripts/peer_compare.sh PEER_BIN_DIR STORE_DIR OUT_DIR
#
# PEER_BIN_DIR holds rocketmq-namesrv-rust and rocketmq-broker-rust (built outside the repo,
# see loadgen/README.md). STORE_DIR is where both brokers keep their stores (a real disk).
# Needs root (ip netns). Env: LOADGEN, PETREL (binaries), MODES ("SYNC_FLUSH ASYNC_FLUSH"),
# RATES (equal offered rates, "500 2000"), SWEEP_START, DURATION.
set -euo pipefail

PEER_BIN=$(realpath "$1")
STORE=$(realpath "$2")
OUT=$3
LOADGEN=$(realpath "${LOADGEN:-target/release/loadgen}")
PETREL=$(realpath "${PETREL:-target/release/petrel}")
MODES=${MODES:-"SYNC_FLUSH ASYNC_FLUSH"}
RATES=${RATES:-"500 2000"}
SWEEP_START=${SWEEP_START:-500}
DURATION=${DURATION:-8s}
NS=loadgen-peer-$$
PIDS=()

mkdir -p "$OUT"
OUT=$(realpath "$OUT")

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
# Foreground helper only: a backgrounded shell function would make $! the subshell, not the
# program, and killing it would leave the program running.
in_ns() { ip netns exec "$NS" "$@"; }

wait_port() {
    for _ in $(seq 1 60); do
        if in_ns bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    echo "port $1 never opened" >&2
    return 1
}

stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
    done
    PIDS=()
    sleep 1
}

measure() { # label flush out-prefix namesrv-port pid
    local label=$1 flush=$2 prefix=$3 ns_port=$4 pid=$5
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "$label ($flush) is not running; see its log in $OUT" >&2
        return 1
    fi
    local common=(--namesrv "127.0.0.1:$ns_port" --connections 4 --max-in-flight 64 --body-size 128
        --broker-label "$label" --flush-mode "$flush" --floor-dir "$STORE")
    in_ns "$LOADGEN" sweep "${common[@]}" --rate "$SWEEP_START" --factor 2 --steps 9 \
        --duration 3s --warmup 1s --p99-limit-ms 200 --out "$OUT/$prefix-sweep" > /dev/null
    for rate in $RATES; do
        in_ns "$LOADGEN" produce "${common[@]}" --rate "$rate" --duration "$DURATION" --warmup 2s \
            --out "$OUT/$prefix-$rate" > /dev/null
    done
}

# Every broker gets ports of its own (a port just closed may sit in TIME_WAIT, and a listener
# without SO_REUSEADDR cannot bind it again at once).
base=20000
for mode in $MODES; do
    lower=$(echo "$mode" | tr 'A-Z' 'a-z')
    base=$((base + 100))
    peer_ns=$((base + 1)); peer_port=$((base + 11)); peer_ha=$((base + 12))
    petrel_ns=$((base + 51)); petrel_port=$((base + 61))
    # The peer.
    home=$STORE/peer-home-$lower
    rm -rf "$home"; mkdir -p "$home/store"
    cat > "$home/broker.toml" <<EOF
[broker]
namesrvAddr = "127.0.0.1:$peer_ns"
brokerIp1 = "127.0.0.1"
listenPort = $peer_port
storePathRootDir = "$home/store"
autoCreateTopicEnable = true

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "peer-a"
brokerClusterName = "DefaultCluster"
brokerId = 0

[store]
flushDiskType = "$mode"
storePathRootDir = "$home/store"
brokerRole = "ASYNC_MASTER"
haListenAddress = "127.0.0.1"
haListenPort = $peer_ha
EOF
    export ROCKETMQ_HOME=$home ROCKETMQ_SECURITY_PROFILE=development-insecure-loopback
    ip netns exec "$NS" "$PEER_BIN/rocketmq-namesrv-rust" --bindAddress 127.0.0.1 --listenPort "$peer_ns" > "$OUT/peer-$lower-namesrv.log" 2>&1 &
    PIDS+=($!)
    wait_port "$peer_ns"
    ip netns exec "$NS" "$PEER_BIN/rocketmq-broker-rust" -c "$home/broker.toml" > "$OUT/peer-$lower-broker.log" 2>&1 &
    broker_pid=$!
    PIDS+=($broker_pid)
    wait_port "$peer_port"
    sleep 3
    echo "peer $mode up; measuring"
    measure "rocketmq-broker-rust 1.0.0" "$mode" "peer-$lower" "$peer_ns" "$broker_pid"
    stop_all

    # Petrel, same settings.
    rm -rf "$STORE/petrel-$lower"
    ip netns exec "$NS" "$PETREL" --listen-port "$petrel_port" --namesrv-listen-port "$petrel_ns" --store-dir "$STORE/petrel-$lower" \
        --flush-disk-type "$mode" --broker-ip1 127.0.0.1 --bind-address 127.0.0.1 \
        --set mappedFileSizeCommitLog=268435456 > "$OUT/petrel-$lower.log" 2>&1 &
    petrel_pid=$!
    PIDS+=($petrel_pid)
    wait_port "$petrel_ns"
    sleep 3
    echo "petrel $mode up; measuring"
    measure "petrel" "$mode" "petrel-$lower" "$petrel_ns" "$petrel_pid"
    stop_all
done

"$LOADGEN" summarize "$OUT"/*/report.json --out "$OUT/comparison.md"
for mode in $MODES; do
    lower=$(echo "$mode" | tr 'A-Z' 'a-z')
    "$LOADGEN" plot "$OUT"/peer-"$lower"-[0-9]*/report.json "$OUT"/petrel-"$lower"-[0-9]*/report.json \
        --title "Petrel vs rocketmq-broker-rust 1.0.0, $mode, equal offered rates" \
        --out "$OUT/comparison-$lower-percentiles.svg"
done
echo "results in $OUT"
