#!/usr/bin/env bash
# Streaming throughput, Tributary (file sink, Debezium JSON, fsync per batch)
# next to pg_recvlogical (the server's own pgoutput decode rate), same run,
# same workload: one transaction inserting ROWS rows (default 300000).
# Tributary's time ends when its slot's confirmed_flush_lsn reaches the end LSN.
# SINK picks the sink measured (the event count is verified at the target):
#   file     JSON Lines, fsync per batch (default)
#   nats     a throwaway nats-server -js, file storage; counted via /jsz
#   postgres upsert into a second database of the same cluster; counted rows
#   kafka    a throwaway tansu broker (memory storage, see scripts/test.sh);
#            counted by a confluent-kafka consumer (pip install confluent-kafka)
#   http     a local Python receiver (keep-alive, 2xx); counted records
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-300000}
SINK=${SINK:-file}
cargo build --release --locked -p tributary >/dev/null 2>&1
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
W=$(mktemp -d /tmp/tributary-bench-XXXX)
RUNAS=(); if [ "$(id -u)" -eq 0 ]; then chown postgres "$W"; RUNAS=(runuser -u postgres --); fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${RUNAS[@]}" "$BIN/initdb" -D "$W/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${RUNAS[@]}" "$BIN/pg_ctl" start -w -D "$W/data" -l "$W/server.log" \
  -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$W -c wal_level=logical" >/dev/null
trap '"${RUNAS[@]}" "$BIN/pg_ctl" stop -m immediate -D "$W/data" >/dev/null 2>&1; rm -rf "$W"' EXIT
PSQL=("$BIN/psql" -qAt -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
"${PSQL[@]}" -c "CREATE TABLE t (id int PRIMARY KEY, v text, n bigint); CREATE PUBLICATION p FOR TABLE t;"
"$BIN/pg_recvlogical" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -S peer -P pgoutput --create-slot
cat > "$W/t.toml" <<TOML
state_dir = "$W/state"
[[source]]
name = "bench"
type = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/postgres"
tables = ["public.t"]
publication = "p"
snapshot = "never"
TOML
if [ "$SINK" = nats ]; then
  NPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
  "$NATS_BIN" -js -a 127.0.0.1 -p "$NPORT" -m "$MPORT" -sd "$W/nats" >/dev/null 2>&1 & NP=$!
  trap 'kill $NP 2>/dev/null; "${RUNAS[@]}" "$BIN/pg_ctl" stop -m immediate -D "$W/data" >/dev/null 2>&1; rm -rf "$W"' EXIT
  until curl -s "127.0.0.1:$MPORT/varz" >/dev/null; do sleep 0.1; done
  printf '[[sink]]\nname = "bus"\ntype = "nats"\nurl = "nats://127.0.0.1:%s"\nstream = "CDC"\n' "$NPORT" >> "$W/t.toml"
elif [ "$SINK" = postgres ]; then
  "${PSQL[@]}" -c "CREATE DATABASE warehouse"
  printf '[[sink]]\nname = "replica"\ntype = "postgres"\nurl = "postgres://postgres@127.0.0.1:%s/warehouse"\ntarget = "copy.{table}"\n' "$PORT" >> "$W/t.toml"
elif [ "$SINK" = kafka ]; then
  KPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  TANSU=${TRIBUTARY_TANSU:-$HOME/.cache/tributary/tansu/bin/tansu}
  mkdir "$W/kafka"
  (cd "$W/kafka" && "$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" --advertised-listener-url "tcp://127.0.0.1:$KPORT" --storage-engine memory://tansu/ >/dev/null 2>&1) & KP=$!
  trap 'kill $KP 2>/dev/null; "${RUNAS[@]}" "$BIN/pg_ctl" stop -m immediate -D "$W/data" >/dev/null 2>&1; rm -rf "$W"' EXIT
  until (exec 3<>/dev/tcp/127.0.0.1/$KPORT) 2>/dev/null; do sleep 0.1; done
  printf '[[sink]]\nname = "kafka"\ntype = "kafka"\nbrokers = "127.0.0.1:%s"\ncompression = "%s"\npartitions = 3\n' "$KPORT" "${COMPRESSION:-lz4}" >> "$W/t.toml"
elif [ "$SINK" = http ]; then
  HPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$W/receiver.py" <<'PY'
import http.server, sys
count = 0
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers["Content-Length"]))
        count += body.count(b'{"topic":')
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
    def do_GET(self):
        text = str(count).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(text))); self.end_headers()
        self.wfile.write(text)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
  python3 "$W/receiver.py" "$HPORT" & HP=$!
  trap 'kill $HP 2>/dev/null; "${RUNAS[@]}" "$BIN/pg_ctl" stop -m immediate -D "$W/data" >/dev/null 2>&1; rm -rf "$W"' EXIT
  until curl -s "127.0.0.1:$HPORT/" >/dev/null; do sleep 0.1; done
  printf '[[sink]]\nname = "hook"\ntype = "http"\nurl = "http://127.0.0.1:%s/hook"\n' "$HPORT" >> "$W/t.toml"
else
  printf '[[sink]]\nname = "file"\ntype = "file"\npath = "%s/events.jsonl"\n' "$W" >> "$W/t.toml"
fi
# First run only creates Tributary's slot.
./target/release/tributary run --config "$W/t.toml" 2>"$W/t1.log" & P=$!
until [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name='tributary_bench' AND active")" = 1 ]; do sleep 0.1; done
kill -TERM $P; wait $P
"${PSQL[@]}" -c "INSERT INTO t SELECT g, md5(g::text), g FROM generate_series(1, $ROWS) g"
END=$("${PSQL[@]}" -c "SELECT pg_current_wal_lsn()")
now() { date +%s.%N; }
S=$(now)
"$BIN/pg_recvlogical" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -S peer --start --endpos="$END" \
  -o proto_version=1 -o publication_names=p -f /dev/null
PEER=$(echo "$(now) - $S" | bc)
S=$(now)
./target/release/tributary run --config "$W/t.toml" 2>"$W/t2.log" & P=$!
until [ "$("${PSQL[@]}" -c "SELECT confirmed_flush_lsn >= '$END' FROM pg_replication_slots WHERE slot_name='tributary_bench'")" = t ]; do sleep 0.02; done
TRIB=$(echo "$(now) - $S" | bc)
# Peak RSS of the process itself (VmHWM), read before it stops.
RSS=$(awk '/VmHWM/ {print $2}' "/proc/$P/status")
kill -TERM $P; wait $P || true
if [ "$SINK" = nats ]; then
  EVENTS=$(curl -s "127.0.0.1:$MPORT/jsz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages"])')
elif [ "$SINK" = postgres ]; then
  EVENTS=$("$BIN/psql" -qAt -h 127.0.0.1 -p "$PORT" -U postgres -d warehouse -c "SELECT count(*) FROM copy.t")
elif [ "$SINK" = kafka ]; then
  EVENTS=$(python3 - "$KPORT" <<'PY'
import sys
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": "127.0.0.1:" + sys.argv[1], "group.id": "bench",
              "enable.auto.commit": False})
c.assign([TopicPartition("bench.public.t", p, 0) for p in range(3)])
ids, idle = set(), 0
while idle < 5:
    batch = c.consume(10000, timeout=1)
    idle = idle + 1 if not batch else 0
    for m in batch:
        if m.error() is None:
            ids.add(dict(m.headers())["tributary-id"])
print(len(ids))
PY
)
elif [ "$SINK" = http ]; then
  EVENTS=$(curl -s "127.0.0.1:$HPORT/")
else
  EVENTS=$(wc -l < "$W/events.jsonl")
fi
[ "$EVENTS" -eq "$ROWS" ] || { echo "event count $EVENTS != $ROWS" >&2; exit 1; }
printf 'workload: one transaction of %d inserts (%s)\n' "$ROWS" "$(nproc) cores"
printf 'pg_recvlogical: %.2f s  %.0f rows/s\n' "$PEER" "$(echo "$ROWS / $PEER" | bc -l)"
printf 'tributary (%s sink): %.2f s  %.0f events/s  (peak RSS %d kB, %d events verified)\n' "$SINK" "$TRIB" "$(echo "$ROWS / $TRIB" | bc -l)" "$RSS" "$EVENTS"
printf 'ratio tributary/pg_recvlogical throughput: %.2f\n' "$(echo "$PEER / $TRIB" | bc -l)"
