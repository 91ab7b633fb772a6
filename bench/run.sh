#!/usr/bin/env bash
# Every figure of bench/results.md, each measured next to its peer in the
# same run on one throwaway PostgreSQL cluster:
#   (a) one 300k-row insert transaction + 30k single-row update transactions
#   (b) 200k single-row update transactions (pgbench-style, 4 clients)
#       peer: pg_recvlogical on a pgoutput slot with --endpos; Tributary's
#       time ends when its slot's confirmed_flush_lsn reaches the end LSN
#   (c) snapshot of a 1M-row table; peer: psql -c "COPY c TO STDOUT";
#       Tributary's time ends when the last row is durable in the file sink
#   (d) commit→sink latency p50/p99 at a steady 5k tx/s (pgbench -R),
#       from Tributary's tributary_commit_to_sink_seconds histogram
#   (e) peak RSS (/usr/bin/time -v) while a 1M-row transaction streams
# Sink: the file sink (Debezium JSON Lines, fsync per batch). Each run
# verifies the number of events it measured. Usage:
#   bench/run.sh [--write]      (--write: also rewrite bench/results.md)
#   ONLY="a b" bench/run.sh     (some workloads only)
#   PROFILE=b bench/run.sh      (Tributary under `perf record -g` in that
#                                workload; writes perf-b.data here, or
#                                into PROFILE_DIR)
#   PROFILE=c PROFILE_TOOL=callgrind …  (valgrind's instruction counts
#                                instead: repeatable on a busy machine;
#                                callgrind-c.out; the timings are then void)
#   SNAPSHOT_PARALLELISM=2 …    (the source's snapshot_parallelism; default 4)
#   SINK_DIR=/dev/shm/b …       (the file sink's directory; on a RAM file
#                                system fsync costs nothing)
#   THREADS=1 …                 ((c): CPU seconds per thread name)
#   TRIBUTARY_BIN=/tmp/old …    (that binary instead of building this tree:
#                                alternate two builds in one sitting to
#                                compare them on a noisy machine)
set -euo pipefail
trap 'echo "bench/run.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
WRITE=${1:-}
if [ -n "${TRIBUTARY_BIN:-}" ]; then
  TRIB=$(realpath "$TRIBUTARY_BIN")
else
  cargo build --release --locked -p tributary >/dev/null 2>&1
  TRIB=$PWD/target/release/tributary
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
W=$(mktemp -d /tmp/tributary-bench-XXXX)
RUNAS=(); if [ "$(id -u)" -eq 0 ]; then chown postgres "$W"; RUNAS=(runuser -u postgres --); fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); APORT=$(free_port)
# Where the file sink writes (SINK_DIR=/dev/shm/x: a RAM file system, which
# takes the disk and its fsyncs out of the figures).
OUTDIR=${SINK_DIR:-$W}; mkdir -p "$OUTDIR"
"${RUNAS[@]}" "$BIN/initdb" -D "$W/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${RUNAS[@]}" "$BIN/pg_ctl" start -w -D "$W/data" -l "$W/server.log" -o "-c listen_addresses=127.0.0.1 \
  -c port=$PORT -c unix_socket_directories=$W -c wal_level=logical -c max_wal_size=8GB \
  -c max_replication_slots=10 -c shared_buffers=256MB" >/dev/null
cleanup() {
  pkill -P $$ 2>/dev/null || true
  "${RUNAS[@]}" "$BIN/pg_ctl" stop -m immediate -D "$W/data" >/dev/null 2>&1
  [ -n "${KEEP:-}" ] || { rm -rf "$W"; [ -z "${SINK_DIR:-}" ] || rm -f "$SINK_DIR"/{a,b,c,d,e}.jsonl; }
}
trap cleanup EXIT
PSQL=("$BIN/psql" -qAt -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
PGBENCH=("$BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n)
RECV=("$BIN/pg_recvlogical" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
now() { date +%s.%N; }
OUT=$W/results.txt
line() { printf '%s\n' "$*" | tee -a "$OUT"; }
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
# The Tributary command of workload $1 (under perf when profiled).
trib() {
  if [ "${PROFILE:-}" = "$1" ] && [ "${PROFILE_TOOL:-}" = callgrind ]; then
    echo valgrind --tool=callgrind --callgrind-out-file="${PROFILE_DIR:-$PWD}/callgrind-$1.out" -- "$TRIB"
  elif [ "${PROFILE:-}" = "$1" ]; then
    echo perf record -e cpu-clock -F 2000 -g -o "${PROFILE_DIR:-$PWD}/perf-$1.data" -- "$TRIB"
  else
    echo "$TRIB"
  fi
}

# config NAME TABLES SNAPSHOT: a Tributary config with a file sink.
config() {
  cat > "$W/$1.toml" <<TOML
state_dir = "$W/state-$1"
[admin]
listen = "127.0.0.1:$APORT"
[[source]]
name = "$1"
type = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/postgres"
tables = [$2]
snapshot = "$3"
snapshot_parallelism = ${SNAPSHOT_PARALLELISM:-4}
[[sink]]
name = "file"
type = "file"
path = "$OUTDIR/$1.jsonl"
TOML
}
# User + system CPU seconds a process used so far.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
# stop PID: SIGTERM to Tributary, whether PID is it or a wrapper around it
# (time, perf, valgrind), then waits for it.
stop() { pkill -TERM -P "$1" 2>/dev/null || kill -TERM "$1"; wait "$1" || true; }
# alive PID LOG: fails the run, with the end of LOG, if PID has exited (a
# Tributary that stopped early must not leave a wait loop waiting forever).
alive() { kill -0 "$1" 2>/dev/null || { echo "tributary exited early; $2 ends:" >&2; tail -3 "$2" >&2; exit 1; }; }
# wait_confirmed NAME LSN PID LOG POLL: until the slot of NAME has confirmed
# LSN (checked every POLL seconds); fails if Tributary (PID) has exited.
wait_confirmed() {
  until [ "$("${PSQL[@]}" -c "SELECT confirmed_flush_lsn >= '$2' FROM pg_replication_slots WHERE slot_name='tributary_$1'")" = t ]; do
    alive "$3" "$4"; sleep "$5"
  done
}
# CPU seconds per thread name (THREADS=1): where a run's time went.
thread_cpu() {
  for t in /proc/$1/task/*; do
    awk -v hz="$(getconf CLK_TCK)" '{sub(/^[^(]*\(/, ""); name = $0; sub(/\).*/, "", name); sub(/^[^)]*\) /, ""); print name, ($12 + $13) / hz}' "$t/stat"
  done | awk '{cpu[$1] += $2; n[$1]++} END {for (k in cpu) printf "  thread %s (x%d): %.2f CPU-s\n", k, n[k], cpu[k]}' | sort >&2
}
# CPU seconds the whole server used so far: the postmaster with the
# backends it reaped (cutime, cstime) and those still running.
server_cpu() {
  local pm; pm=$(head -1 "$W/data/postmaster.pid")
  { awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat"
    for c in $(pgrep -P "$pm"); do awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null; done
  } | awk -v hz="$(getconf CLK_TCK)" '{s += $1} END {printf "%.2f", s / hz}'
}
# server_cpu once the postmaster has reaped the backends that just ended:
# sampled at once, a finished backend's time is in neither place (the reap
# came 5-7 ms after psql returned, measured). The first of two equal
# readings 100 ms apart, or the last after 2 s.
server_cpu_settled() {
  local a b i
  a=$(server_cpu)
  for i in $(seq 20); do sleep 0.1; b=$(server_cpu); [ "$a" = "$b" ] && break; a=$b; done
  echo "$b"
}
slot_active() { [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name='tributary_$1' AND active")" = 1 ]; }
# Creates both slots (Tributary's by a first run that only starts streaming).
make_slots() {
  "${RECV[@]}" -S "peer_$1" -P pgoutput --create-slot
  "${PSQL[@]}" -c "CREATE PUBLICATION peer_$1 FOR TABLE $2"
  config "$1" "\"public.$2\"" never
  "$TRIB" run --config "$W/$1.toml" 2>"$W/$1-first.log" & local p=$!
  until slot_active "$1"; do alive $p "$W/$1-first.log"; sleep 0.1; done
  stop $p
}
# stream NAME EXPECTED_EVENTS LABEL: times the peer, then Tributary, to the end LSN.
stream() {
  local end s peer trib p rss events
  end=$("${PSQL[@]}" -c "SELECT pg_current_wal_lsn()")
  s=$(now)
  "${RECV[@]}" -S "peer_$1" --start --endpos="$end" -o proto_version=1 -o "publication_names=peer_$1" -f /dev/null
  peer=$(echo "$(now) - $s" | bc)
  s=$(now)
  $(trib "$1") run --config "$W/$1.toml" 2>"$W/$1.log" & p=$!
  wait_confirmed "$1" "$end" $p "$W/$1.log" 0.01
  trib=$(echo "$(now) - $s" | bc)
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$p/status")
  cpu=$(cpu_seconds $p)
  stop $p
  events=$(wc -l < "$OUTDIR/$1.jsonl")
  [ "$events" -eq "$2" ] || { echo "$1: $events events, expected $2" >&2; exit 1; }
  line "$3 | pg_recvlogical $(printf %.2f "$peer") s | tributary $(printf %.2f "$trib") s, $(printf %.0f "$(echo "$2 / $trib" | bc -l)") events/s, $cpu CPU-s, peak RSS $((rss / 1024)) MB | ratio $(printf %.2f "$(echo "$peer / $trib" | bc -l)") | $events events verified"
}

: > "$OUT"
# --- (a) 300k-row transaction + 30k small update transactions
if want a; then
"${PSQL[@]}" -c "CREATE TABLE a (id int PRIMARY KEY, v text, n bigint)"
make_slots a a
"${PSQL[@]}" -c "INSERT INTO a SELECT g, md5(g::text), g FROM generate_series(1, 300000) g"
printf '\\set id random(1, 300000)\nUPDATE a SET n = n + 1 WHERE id = :id;\n' > "$W/a.sql"
"${PGBENCH[@]}" -c 2 -t 15000 -f "$W/a.sql" postgres >/dev/null
stream a 330000 "(a) 300k-row tx + 30k update txs"
fi

# --- (b) 200k single-row update transactions
if want b; then
"${PSQL[@]}" -c "CREATE TABLE b (id int PRIMARY KEY, v text, n bigint); INSERT INTO b SELECT g, md5(g::text), 0 FROM generate_series(1, 100000) g"
make_slots b b
printf '\\set id random(1, 100000)\nUPDATE b SET n = n + 1 WHERE id = :id;\n' > "$W/b.sql"
"${PGBENCH[@]}" -c 4 -j 2 -t 50000 -f "$W/b.sql" postgres >/dev/null
stream b 200000 "(b) 200k single-row update txs"
fi

# --- (c) snapshot of a 1M-row table
if want c; then
"${PSQL[@]}" -c "CREATE TABLE c (id int PRIMARY KEY, v text, n bigint, at timestamptz); \
  INSERT INTO c SELECT g, md5(g::text), g, '2024-01-01'::timestamptz + g * interval '1 s' FROM generate_series(1, 1000000) g"
# A checkpoint after the load: the peer and Tributary then share neither
# the disk nor the CPU with the checkpointer flushing the new table.
"${PSQL[@]}" -c "VACUUM ANALYZE c"
"${PSQL[@]}" -c "CHECKPOINT"
s=$(now); s_cpu=$(server_cpu)
"${PSQL[@]}" -c "COPY c TO STDOUT" > /dev/null
peer=$(echo "$(now) - $s" | bc); peer_server=$(printf %.2f "$(echo "$(server_cpu_settled) - $s_cpu" | bc)")
config c '"public.c"' initial
s=$(now); s_cpu=$(server_cpu)
$(trib c) run --config "$W/c.toml" 2>"$W/c.log" & P=$!
metric() { curl -s "127.0.0.1:$APORT/metrics" | awk -v m="$1" '$1 ~ "^"m {s += $2} END {print s + 0}'; }
until [ "$(metric 'tributary_sink_events_total')" -ge 1000000 ] 2>/dev/null; do alive $P "$W/c.log"; sleep 0.02; done
trib=$(echo "$(now) - $s" | bc)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$P/status")
cpu=$(cpu_seconds $P)
trib_server=$(printf %.2f "$(echo "$(server_cpu_settled) - $s_cpu" | bc)")
[ -z "${THREADS:-}" ] || thread_cpu $P
busy=$(metric 'tributary_sink_batch_seconds_sum')
writes=$(metric 'tributary_sink_batch_seconds_count')
stop $P
events=$(wc -l < "$OUTDIR/c.jsonl")
[ "$events" -eq 1000000 ] || { echo "c: $events events" >&2; exit 1; }
line "(c) snapshot of 1M rows | COPY TO STDOUT $(printf %.2f "$peer") s (server $peer_server CPU-s) | tributary $(printf %.2f "$trib") s, $(printf %.0f "$(echo "1000000 / $trib" | bc -l)") rows/s, $cpu CPU-s (server $trib_server CPU-s), peak RSS $((rss / 1024)) MB, batches in the sink (hand-off to durable, summed; two overlap) $(printf %.2f "$busy") s over $writes writes | ratio $(printf %.2f "$(echo "$peer / $trib" | bc -l)") | $events events verified"
# The disk's share of the limit: the sink's output is several times COPY's
# text, and it must be durable. dd writes as many bytes in 1 MB blocks
# and fdatasyncs them: no encoding, one writer, the best case.
out_bytes=$(stat -c %s "$OUTDIR/c.jsonl")
copy_bytes=$("${PSQL[@]}" -c "COPY c TO STDOUT" | wc -c)
s=$(now)
dd if=/dev/zero of="$W/floor" bs=1M count=$((out_bytes / 1048576)) conv=fdatasync status=none
floor=$(echo "$(now) - $s" | bc)
rm -f "$W/floor"
line "(c/disk) the snapshot wrote $((out_bytes / 1000000)) MB of Debezium JSON (COPY's text: $((copy_bytes / 1000000)) MB) | writing $((out_bytes / 1000000)) MB durably with dd alone (1 MB blocks, conv=fdatasync) took $(printf %.2f "$floor") s, $(printf %.2f "$(echo "$floor / $peer" | bc -l)")× the COPY's time"
fi

# --- (d) commit→sink latency at a steady 5k tx/s
if want d; then
"${PSQL[@]}" -c "CREATE TABLE d (id bigserial PRIMARY KEY, v text)"
config d '"public.d"' never
/usr/bin/time -f "%U %S" -o "$W/d.cpu" "$TRIB" run --config "$W/d.toml" 2>"$W/d.log" & P=$!
until slot_active d; do alive $P "$W/d.log"; sleep 0.1; done
printf "INSERT INTO d (v) VALUES ('x');\n" > "$W/d.sql"
# -l logs every transaction's own latency: the server's commit latency under
# the same load, the context for Tributary's tail (2 shared cores).
TPS=$(cd "$W" && "${PGBENCH[@]}" -c 8 -j 2 -R 5000 -T 20 -l --log-prefix=d.pgbench -f "$W/d.sql" postgres 2>/dev/null | awk '/^tps/ {print $3; exit}')
PGB=$(cat "$W"/d.pgbench.* | python3 -c '
import sys
t = sorted(int(l.split()[2]) for l in sys.stdin)
q = lambda p: t[min(len(t) - 1, int(p * len(t)))] / 1000
print(f"pgbench transaction latency p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms")')
end=$("${PSQL[@]}" -c "SELECT pg_current_wal_lsn()")
wait_confirmed d "$end" $P "$W/d.log" 0.05
curl -s "127.0.0.1:$APORT/metrics" > "$W/d.metrics"
stop $P
CPU=$(awk '{printf "%.2f", $1 + $2}' "$W/d.cpu")
events=$(wc -l < "$OUTDIR/d.jsonl")
LAT=$(python3 - "$W/d.metrics" <<'PY'
import re, sys
def histogram(name):
    buckets, total = [], 0
    for l in open(sys.argv[1]):
        m = re.match(name + r'_bucket\{.*le="([^"]+)"\} (\S+)', l)
        if m and m.group(1) != "+Inf":
            buckets.append((float(m.group(1)), float(m.group(2))))
        m = re.match(name + r'_count\{.*\} (\S+)', l)
        if m:
            total = float(m.group(1))
    def q(p):
        want, lo, below = p * total, 0.0, 0.0
        for le, n in sorted(buckets):
            if n >= want:  # linear interpolation inside the bucket
                return (lo + (le - lo) * (want - below) / max(n - below, 1)) * 1000
            lo, below = le, n
        return float("inf")
    return q, int(total)
lat, n = histogram("tributary_commit_to_sink_seconds")
write, writes = histogram("tributary_sink_batch_seconds")
print(f"p50 {lat(0.5):.1f} ms, p99 {lat(0.99):.1f} ms over {n} transactions; "
      f"sink writes (encode + write + fsync) p50 {write(0.5):.1f} ms, p99 {write(0.99):.1f} ms over {writes} writes")
PY
)
line "(d) commit→sink latency at $(printf %.0f "$TPS") tx/s (pgbench -R 5000, 20 s) | $LAT; tributary $CPU CPU-s | $PGB | $events events"
fi

# --- (e) peak RSS while a 1M-row transaction streams
if want e; then
"${PSQL[@]}" -c "CREATE TABLE e (id int PRIMARY KEY, v text, n bigint)"
make_slots e e
"${PSQL[@]}" -c "INSERT INTO e SELECT g, md5(g::text), g FROM generate_series(1, 1000000) g"
end=$("${PSQL[@]}" -c "SELECT pg_current_wal_lsn()")
/usr/bin/time -v -o "$W/e.time" "$TRIB" run --config "$W/e.toml" 2>"$W/e.log" & P=$!
if [ -n "${RSS_TRACE:-}" ]; then
  (sleep 0.2; C=$(pgrep -P $P); while kill -0 "$C" 2>/dev/null; do
     echo "$(date +%s.%N | cut -c7-14) $(awk '/VmRSS/ {print $2}' /proc/$C/status) kB ($(awk '/^(Anonymous|Rss)/ {printf "%s %s ", $1, $2}' /proc/$C/smaps_rollup)), $(wc -l < "$OUTDIR/e.jsonl" 2>/dev/null) events" >&2; sleep 0.5; done) &
fi
wait_confirmed e "$end" $P "$W/e.log" 0.05
stop $P
events=$(wc -l < "$OUTDIR/e.jsonl")
[ "$events" -eq 1000000 ] || { echo "e: $events events" >&2; exit 1; }
line "(e) 1M-row transaction streamed | peak RSS $(( $(awk -F': ' '/Maximum resident/ {print $2}' "$W/e.time") / 1024 )) MB (/usr/bin/time -v) | $events events verified"
fi

if [ "$WRITE" = --write ]; then
  # Replaces the measured block of bench/results.md; the analysis around it stays.
  {
    echo "Produced by \`bench/run.sh --write\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)."
    echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $("$BIN/postgres" --version)."
    echo "Sink: file (Debezium JSON Lines, fsync per batch)$([ -z "${SINK_DIR:-}" ] || echo " in $SINK_DIR ($(stat -f -c %T "$SINK_DIR"))"). Single runs on a shared machine: expect ±20%."
    echo
    echo "| workload | peer | tributary | ratio (≥ 1.0: at least as fast as the peer) | check |"
    echo "|---|---|---|---|---|"
    grep -E '^\((a|b|c)\)' "$OUT" | sed 's/^/| /; s/$/ |/'
    echo
    grep -E '^\((c/disk|d|e)\)' "$OUT" | sed 's/^/- /'
  } > "$W/block.md"
  python3 - "$W/block.md" bench/results.md <<'PY'
import sys, pathlib
block = pathlib.Path(sys.argv[1]).read_text()
path = pathlib.Path(sys.argv[2])
text = path.read_text() if path.exists() else "# Benchmark results\n\n<!-- measured:begin -->\n<!-- measured:end -->\n"
head, rest = text.split("<!-- measured:begin -->\n", 1)
_, tail = rest.split("<!-- measured:end -->", 1)
path.write_text(head + "<!-- measured:begin -->\n" + block + "<!-- measured:end -->" + tail)
PY
fi
