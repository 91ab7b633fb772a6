#!/usr/bin/env bash
# The stream-source figures of bench/results.md ("Streams"), each next to
# a plain JetStream consumer doing the same reading, in one run on one
# throwaway nats-server -js:
#   (a) throughput: N payments already in the stream, read into a view
#       (SELECT count(*), sum(amount) FROM the payments table) until it
#       counts N, from process start, vs the peer: a durable pull consumer
#       (async-nats, AckAll every 1000) receiving all N, from its creation
#   (b) freshness: 1000 msg/s for 20 s while both follow the subject:
#       publish→visible in the view (tributary_view_freshness_seconds,
#       from the server's publish timestamp) vs publish→received by the
#       peer; p50/p99
#   (c), (d): the same for a Kafka topic of 3 partitions on a throwaway
#       tansu broker (when tansu is installed, see scripts/test.sh); the
#       peer is a plain librdkafka consumer of every partition
# Usage: bench/streams.sh [--write]   (--write: rewrite the streams block of
#        bench/results.md)
#        MESSAGES=300000 bench/streams.sh (the default)
set -euo pipefail
trap 'echo "bench/streams.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
WRITE=${1:-}
cargo build --release --locked -p tributary --bin tributary --example nats_load --example kafka_load >/dev/null 2>&1
KLOAD=$PWD/target/release/examples/kafka_load
TRIB=$PWD/target/release/tributary
LOAD=$PWD/target/release/examples/nats_load
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
W=$(mktemp -d /tmp/tributary-streams-bench-XXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NPORT=$(free_port); APORT=$(free_port); VPORT=$(free_port)
"$NATS_SERVER" -js -a 127.0.0.1 -p "$NPORT" -sd "$W/js" >"$W/nats.log" 2>&1 &
cleanup() {
  pkill -P $$ 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
URL=nats://127.0.0.1:$NPORT
until (echo > /dev/tcp/127.0.0.1/$NPORT) 2>/dev/null; do sleep 0.05; done
VIEW=("$BIN/psql" -qAtX -h 127.0.0.1 -p "$VPORT" -U app -d tributary)
now() { date +%s.%N; }
since() { printf %.2f "$(echo "$(now) - $1" | bc)"; }
OUT=$W/results.txt
line() { printf '%s\n' "$*" | tee -a "$OUT"; }
MESSAGES=${MESSAGES:-300000}

# Starts tributary on CONFIG (log LOG), waits until the view `total` counts
# MESSAGES and checks its sum; sets TPID, took and rate.
run_until_complete() {
  local start; start=$(now)
  "$TRIB" run --config "$1" >"$2" 2>&1 &
  TPID=$!
  until [ "$("${VIEW[@]}" -c 'SELECT n FROM total' 2>/dev/null || true)" = "$MESSAGES" ]; do
    kill -0 $TPID 2>/dev/null || { tail -20 "$2"; exit 1; }
    sleep 0.02
  done
  took=$(since "$start")
  rate=$(python3 -c "print(round($MESSAGES / $took))")
  local got_sum; got_sum=$("${VIEW[@]}" -c 'SELECT amount FROM total')
  [ "$got_sum" = "$expected_sum" ] || { echo "view sum $got_sum, expected $expected_sum" >&2; exit 1; }
}

"$LOAD" publish "$URL" EVENTS payments.made "$MESSAGES" 0 | sed 's/^/load: /'

# --- (a) throughput
peer=$("$LOAD" drain "$URL" EVENTS payments.made "$MESSAGES" peer)
peer_rate=$(echo "$peer" | sed -E 's/.*: ([0-9]+) msg\/s.*/\1/')
cat > "$W/tributary.toml" <<TOML
state_dir = "$W/state"
[admin]
listen = "127.0.0.1:$APORT"
[server]
listen = "127.0.0.1:$VPORT"
[[source]]
name = "payments"
type = "nats"
url = "$URL"
stream = "EVENTS"
subject = "payments.made"
mode = "append"
columns = ["customer_id integer not null", "amount numeric(12,2) not null"]
[[view]]
name = "total"
sql = "SELECT count(*) AS n, sum(amount) AS amount FROM payments.public.payments"
TOML
expected_sum=$(python3 -c "print(f'{sum((i % 5000) * 100 + i % 100 for i in range($MESSAGES)) / 100:.2f}')")
run_until_complete "$W/tributary.toml" "$W/tributary.log"
line "(a) $MESSAGES messages in the stream into a view (count, sum) | peer: a durable pull consumer: $peer | tributary: $took s from start to the view complete: $rate msg/s (sum checked) | ratio $(python3 -c "print(f'{$rate / $peer_rate:.2f}')")×"

# --- (b) freshness at 1000 msg/s
curl -s "127.0.0.1:$APORT/metrics" > "$W/before.metrics"
"$LOAD" follow "$URL" EVENTS payments.made 20000 follower > "$W/follow.txt" &
FOLLOW=$!
sleep 0.5
"$LOAD" publish "$URL" EVENTS payments.made 20000 1000 | sed 's/^/load: /'
wait $FOLLOW
until [ "$("${VIEW[@]}" -c 'SELECT n FROM total')" = "$((MESSAGES + 20000))" ]; do sleep 0.02; done
curl -s "127.0.0.1:$APORT/metrics" > "$W/after.metrics"
FRESH=$(python3 bench/histogram.py "$W/before.metrics" "$W/after.metrics" tributary_view_freshness_seconds)
peer_latency=$(sed -E 's/.*received //' "$W/follow.txt")
line "(b) freshness at 1000 msg/s for 20 s | peer publish→received $peer_latency | tributary publish→visible in the view $FRESH messages | rss $(ps -o rss= -p $TPID | awk '{printf "%.0f MB", $1/1024}')"
kill -TERM $TPID; wait $TPID || true

# --- (c), (d): Kafka
TANSU=${TRIBUTARY_TANSU:-$HOME/.cache/tributary/tansu/bin/tansu}
if [ -x "$TANSU" ]; then
  KPORT=$(free_port); APORT=$(free_port); VPORT=$(free_port)
  VIEW=("$BIN/psql" -qAtX -h 127.0.0.1 -p "$VPORT" -U app -d tributary)
  mkdir -p "$W/tansu"
  (cd "$W/tansu" && env -u CLUSTER_ID -u STORAGE_ENGINE "$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KPORT" --storage-engine memory://tansu/ >"$W/tansu.log" 2>&1) &
  until (echo > /dev/tcp/127.0.0.1/$KPORT) 2>/dev/null; do sleep 0.05; done
  BROKERS=127.0.0.1:$KPORT
  "$KLOAD" create "$BROKERS" payments 3
  "$KLOAD" publish "$BROKERS" payments "$MESSAGES" 0 | sed 's/^/load: /'
  kpeer=$("$KLOAD" drain "$BROKERS" payments "$MESSAGES")
  kpeer_rate=$(echo "$kpeer" | sed -E 's/.*: ([0-9]+) msg\/s.*/\1/')
  cat > "$W/kafka.toml" <<TOML
state_dir = "$W/kstate"
[admin]
listen = "127.0.0.1:$APORT"
[server]
listen = "127.0.0.1:$VPORT"
[[source]]
name = "payments"
type = "kafka"
brokers = "$BROKERS"
topics = ["payments"]
mode = "append"
columns = ["customer_id integer not null", "amount numeric(12,2) not null"]
[[view]]
name = "total"
sql = "SELECT count(*) AS n, sum(amount) AS amount FROM payments.public.payments"
TOML
  run_until_complete "$W/kafka.toml" "$W/kafka-tributary.log"
  line "(c) $MESSAGES messages on 3 Kafka partitions (tansu, in memory) into the view | peer: a librdkafka consumer of every partition: $kpeer | tributary: $took s from start to the view complete: $rate msg/s (sum checked) | ratio $(python3 -c "print(f'{$rate / $kpeer_rate:.2f}')")×"
  curl -s "127.0.0.1:$APORT/metrics" > "$W/kbefore.metrics"
  "$KLOAD" follow "$BROKERS" payments 20000 > "$W/kfollow.txt" &
  FOLLOW=$!
  sleep 1
  "$KLOAD" publish "$BROKERS" payments 20000 1000 | sed 's/^/load: /'
  wait $FOLLOW
  until [ "$("${VIEW[@]}" -c 'SELECT n FROM total')" = "$((MESSAGES + 20000))" ]; do sleep 0.02; done
  curl -s "127.0.0.1:$APORT/metrics" > "$W/kafter.metrics"
  KFRESH=$(python3 bench/histogram.py "$W/kbefore.metrics" "$W/kafter.metrics" tributary_view_freshness_seconds)
  line "(d) freshness at 1000 msg/s for 20 s | peer produced→received $(sed -E 's/.*received //' "$W/kfollow.txt") | tributary produced→visible in the view $KFRESH batches (one per transaction: the first message of each; the producer's timestamps: millisecond resolution)"
  kill -TERM $TPID; wait $TPID || true
else
  line "(c), (d) Kafka: not run (no tansu at $TANSU; scripts/test.sh installs it)"
fi

if [ "$WRITE" = "--write" ]; then
  python3 - "$OUT" <<'PY'
import re, sys, subprocess
results = open(sys.argv[1]).read().strip()
path = "bench/results.md"
text = open(path).read()
cpu = subprocess.run(["sh", "-c", "nproc; grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.split("\n")
block = f"<!-- streams:begin -->\n```\n{results}\n```\n(on {cpu[0]} cores,{cpu[1]}; `bench/streams.sh`)\n<!-- streams:end -->"
if "<!-- streams:begin -->" in text:
    text = re.sub(r"<!-- streams:begin -->.*<!-- streams:end -->", block, text, flags=re.S)
else:
    text += "\n## Streams (NATS source into a view)\n" + block + "\n"
open(path, "w").write(text)
PY
fi
