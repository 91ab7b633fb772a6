#!/usr/bin/env bash
# The view figures of bench/results.md, each next to PostgreSQL's own way
# of keeping the same SQL, in one run on one throwaway cluster:
#   the asset overview (issue 15) over three databases, 1M source rows in
#   all (500k accounts, 300k positions, 200k certificates, 100k customers);
#   the peer holds the same rows in one database, as a MATERIALIZED VIEW.
#   (a) initial build: Tributary from start to the view complete (checked
#       row by row against the materialized view) vs CREATE MATERIALIZED
#       VIEW and REFRESH MATERIALIZED VIEW of the same SQL
#   (b) freshness commit→visible p50/p99 at a steady 1k tx/s of single-row
#       updates (pgbench -R 1000 on the cash database, after a 5 s warm-up
#       at that rate), from Tributary's
#       tributary_view_freshness_seconds histogram, vs one REFRESH (the
#       least staleness a refreshed materialized view can have)
#   (c) a 20-row keyset page (WHERE customer_id > $1 ORDER BY customer_id
#       LIMIT 20, random $1, prepared) p50/p99 over pgwire from Tributary's
#       server vs the same page from the materialized view with a unique
#       index, both driven by pgbench -M prepared, one client
#   (d) peak RSS of the Tributary process per million source rows
#   (e) rehydration after SIGTERM: restart to the view exact again (no
#       re-snapshot), vs the initial build
# Usage: bench/views.sh [--write]   (--write: rewrite the views block of
#        bench/results.md; the text around it stays)
#        ROWS=100000 bench/views.sh (a smaller run: source rows in all)
#        PROFILE_BUILD=perf.data …  (the first run under `perf record -g`;
#                                    its memory figures are then perf's)
set -euo pipefail
trap 'echo "bench/views.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
WRITE=${1:-}
cargo build --release --locked -p tributary >/dev/null 2>&1
TRIB=$PWD/target/release/tributary
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
W=$(mktemp -d /tmp/tributary-views-bench-XXXX)
RUNAS=(); if [ "$(id -u)" -eq 0 ]; then chown postgres "$W"; RUNAS=(runuser -u postgres --); fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); APORT=$(free_port); VPORT=$(free_port)
"${RUNAS[@]}" "$BIN/initdb" -D "$W/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${RUNAS[@]}" "$BIN/pg_ctl" start -w -D "$W/data" -l "$W/server.log" -o "-c listen_addresses=127.0.0.1 \
  -c port=$PORT -c unix_socket_directories=$W -c wal_level=logical -c max_wal_size=8GB \
  -c max_replication_slots=10 -c shared_buffers=256MB" >/dev/null
cleanup() {
  pkill -P $$ 2>/dev/null || true
  "${RUNAS[@]}" "$BIN/pg_ctl" stop -m immediate -D "$W/data" >/dev/null 2>&1
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
PSQL=("$BIN/psql" -qAtX -h 127.0.0.1 -p "$PORT" -U postgres)
VIEW=("$BIN/psql" -qAtX -h 127.0.0.1 -p "$VPORT" -U app -d tributary)
PGBENCH=("$BIN/pgbench" -n -h 127.0.0.1)
now() { date +%s.%N; }
since() { printf %.2f "$(echo "$(now) - $1" | bc)"; }
OUT=$W/results.txt
line() { printf '%s\n' "$*" | tee -a "$OUT"; }

ROWS=${ROWS:-1000000}
ACCOUNTS=$((ROWS / 2)); POSITIONS=$((ROWS * 3 / 10)); CERTIFICATES=$((ROWS / 5)); CUSTOMERS=$((ROWS / 10))
OVERVIEW="SELECT customer_id, sum(cash) AS cash, sum(stocks) AS stocks, sum(deposits) AS deposits,
  sum(cash + stocks + deposits) AS total, count(*) AS holdings
FROM (SELECT customer_id, balance AS cash, 0 AS stocks, 0 AS deposits FROM cash.public.accounts
      UNION ALL SELECT customer_id, 0, qty * price, 0 FROM stocks.public.positions
      UNION ALL SELECT customer_id, 0, 0, principal FROM deposits.public.certificates) holdings
GROUP BY customer_id"
# Each table's DDL and rows, in a service's database (no prefix) or, as a
# schema, in the peer's: the same rows in both.
accounts() { echo "CREATE TABLE ${1}accounts (id int PRIMARY KEY, customer_id int NOT NULL, balance numeric(14,2) NOT NULL);
  INSERT INTO ${1}accounts SELECT g, g % $CUSTOMERS + 1, (g::bigint * 7919 % 1000000) / 100.0 FROM generate_series(1, $ACCOUNTS) g;"; }
positions() { echo "CREATE TABLE ${1}positions (id int PRIMARY KEY, customer_id int NOT NULL, symbol text NOT NULL, qty int NOT NULL, price numeric(12,4) NOT NULL);
  INSERT INTO ${1}positions SELECT g, g % $CUSTOMERS + 1, 'S' || g % 97, g % 500 + 1, (g::bigint * 104729 % 10000000) / 10000.0 FROM generate_series(1, $POSITIONS) g;"; }
certificates() { echo "CREATE TABLE ${1}certificates (id int PRIMARY KEY, customer_id int NOT NULL, principal numeric(14,2) NOT NULL);
  INSERT INTO ${1}certificates SELECT g, g % $CUSTOMERS + 1, 1000 + g % 50000 FROM generate_series(1, $CERTIFICATES) g;"; }
for db in cash stocks deposits peer; do "${PSQL[@]}" -c "CREATE DATABASE $db"; done
"${PSQL[@]}" -d cash -c "$(accounts '')"
"${PSQL[@]}" -d stocks -c "$(positions '')"
"${PSQL[@]}" -d deposits -c "$(certificates '')"
"${PSQL[@]}" -d peer -c "CREATE SCHEMA cash; CREATE SCHEMA stocks; CREATE SCHEMA deposits"
"${PSQL[@]}" -d peer -c "$(accounts cash.)" -c "$(positions stocks.)" -c "$(certificates deposits.)"
for db in cash stocks deposits peer; do "${PSQL[@]}" -d "$db" -c "VACUUM ANALYZE"; done
PEER_SQL=${OVERVIEW//.public./.}

# --- the peer: CREATE and REFRESH MATERIALIZED VIEW of the same SQL
s=$(now); "${PSQL[@]}" -d peer -c "CREATE MATERIALIZED VIEW overview AS $PEER_SQL"; create=$(since "$s")
"${PSQL[@]}" -d peer -c "CREATE UNIQUE INDEX ON overview (customer_id)"
refreshes=()
for _ in 1 2 3; do s=$(now); "${PSQL[@]}" -d peer -c "REFRESH MATERIALIZED VIEW overview"; refreshes+=("$(since "$s")"); done
refresh=$(printf '%s\n' "${refreshes[@]}" | sort -n | sed -n 2p)  # the median of three
"${PSQL[@]}" -d peer -c "SELECT * FROM overview ORDER BY customer_id" > "$W/expected.txt"
[ "$(wc -l < "$W/expected.txt")" -eq "$CUSTOMERS" ] || { echo "the peer has $(wc -l < "$W/expected.txt") rows" >&2; exit 1; }

# --- Tributary
{
  printf 'state_dir = "%s/state"\n[admin]\nlisten = "127.0.0.1:%s"\n[server]\nlisten = "127.0.0.1:%s"\n' "$W" "$APORT" "$VPORT"
  for svc in cash:accounts stocks:positions deposits:certificates; do
    printf '[[source]]\nname = "%s"\ntype = "postgres"\nurl = "postgres://postgres@127.0.0.1:%s/%s"\ntables = ["public.%s"]\n' "${svc%%:*}" "$PORT" "${svc%%:*}" "${svc##*:}"
  done
  printf '[[view]]\nname = "customer_overview"\nsql = """%s"""\n' "$OVERVIEW"
} > "$W/tributary.toml"
# The view as the server returns it, in the peer's text (psql -A).
view_rows() { "${VIEW[@]}" -c "SELECT * FROM customer_overview ORDER BY customer_id" 2>/dev/null; }
# The highest customer's row: sources snapshot whole (one transaction each),
# so once this row equals the peer's, every source's snapshot is in.
LAST=$(tail -1 "$W/expected.txt")
wait_exact() { # PID LOG: until the view equals the peer (the last row first, cheaply)
  until [ "$("${VIEW[@]}" -c "SELECT * FROM customer_overview WHERE customer_id = $CUSTOMERS" 2>/dev/null)" = "$LAST" ]; do
    kill -0 "$1" 2>/dev/null || { echo "tributary exited; $2 ends:" >&2; tail -5 "$2" >&2; exit 1; }
    sleep 0.01
  done
}
verify() { # the whole view, row by row, against the peer
  view_rows > "$W/got.txt"
  cmp -s "$W/got.txt" "$W/expected.txt" || { echo "the view differs from the peer:" >&2; diff "$W/got.txt" "$W/expected.txt" | head -5 >&2; exit 1; }
}
s=$(now)
${PROFILE_BUILD:+perf record -F 999 -g -o "$PROFILE_BUILD" --} "$TRIB" run --config "$W/tributary.toml" 2>"$W/run1.log" & P=$!
wait_exact $P "$W/run1.log"; build=$(since "$s")
verify
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$P/status"); rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$P/status")
line "(a) initial build, $((ROWS / 1000))k source rows → $((CUSTOMERS / 1000))k view rows | CREATE MATERIALIZED VIEW ${create} s, REFRESH MATERIALIZED VIEW ${refresh} s (median of ${refreshes[*]}) | tributary ${build} s from start (3 snapshots + the dataflow) | ratio $(printf %.2f "$(echo "$refresh / $build" | bc -l)") vs REFRESH | $CUSTOMERS rows equal the peer's"

# --- (b) freshness at 1k tx/s of single-row updates
printf '\\set id random(1, %s)\nUPDATE accounts SET balance = balance + 0.01 WHERE id = :id;\n' "$ACCOUNTS" > "$W/update.sql"
# A 5 s warm-up at the same rate first, not measured: right after the
# build the keeper is still committing the snapshots' rows (seconds at 1M
# rows), and the first transactions wait behind it (see results.md).
curl -s "127.0.0.1:$APORT/metrics" > "$W/warm.metrics"
(cd "$W" && "${PGBENCH[@]}" -p "$PORT" -U postgres -c 4 -j 2 -R 1000 -T 5 -f "$W/update.sql" cash >/dev/null 2>&1)
sleep 1
curl -s "127.0.0.1:$APORT/metrics" > "$W/before.metrics"
TPS=$(cd "$W" && "${PGBENCH[@]}" -p "$PORT" -U postgres -c 4 -j 2 -R 1000 -T 20 -f "$W/update.sql" cash 2>/dev/null | awk '/^tps/ {print $3; exit}')
# The view catches up: the peer refreshed over the updated rows.
"${PSQL[@]}" -d peer -c "TRUNCATE cash.accounts"
"${PSQL[@]}" -d cash -c "COPY accounts TO STDOUT" | "${PSQL[@]}" -d peer -c "COPY cash.accounts FROM STDIN"
"${PSQL[@]}" -d peer -c "REFRESH MATERIALIZED VIEW overview"
"${PSQL[@]}" -d peer -c "SELECT * FROM overview ORDER BY customer_id" > "$W/expected.txt"
LAST=$(tail -1 "$W/expected.txt")
deadline=$(( $(date +%s) + 30 ))
until view_rows > "$W/got.txt" && cmp -s "$W/got.txt" "$W/expected.txt"; do
  [ "$(date +%s)" -lt "$deadline" ] || verify; sleep 0.2
done
curl -s "127.0.0.1:$APORT/metrics" > "$W/after.metrics"
hist() { python3 bench/histogram.py "$@"; } # BEFORE AFTER NAME [LABEL]
FRESH="$(hist "$W/before.metrics" "$W/after.metrics" tributary_view_freshness_seconds) transactions\
; keeping the rows (state-store commit) $(hist "$W/before.metrics" "$W/after.metrics" tributary_view_keep_seconds 'source="cash"') group commits\
; the engine's step $(hist "$W/before.metrics" "$W/after.metrics" tributary_view_apply_seconds 'source="cash"') group commits"
WARM="$(hist "$W/warm.metrics" "$W/before.metrics" tributary_view_freshness_seconds) transactions"
line "(b/warm-up) the first 5 s at 1k tx/s right after the build (not in (b)) | tributary $WARM"
line "(b) freshness commit→visible at $(printf %.0f "$TPS") tx/s (pgbench -R 1000, 20 s, single-row updates) | one REFRESH MATERIALIZED VIEW ${refresh} s: a refreshed view is at least that stale | tributary $FRESH | ratio $(python3 -c "import re,sys; p=float(re.search(r'p99 (\S+) ms', sys.argv[1]).group(1)); print(f'{float(sys.argv[2])*1000/p:.0f}')" "$FRESH" "$refresh")× fresher at p99 | the view equals the refreshed peer after the run"

# --- (c) a 20-row keyset page, prepared, one client, 10 s each
printf '\\set after random(0, %s)\nSELECT * FROM %s WHERE customer_id > :after ORDER BY customer_id LIMIT 20;\n' "$((CUSTOMERS - 20))" overview > "$W/page-peer.sql"
printf '\\set after random(0, %s)\nSELECT * FROM %s WHERE customer_id > :after ORDER BY customer_id LIMIT 20;\n' "$((CUSTOMERS - 20))" customer_overview > "$W/page-view.sql"
pages() { # NAME PORT USER DB SCRIPT
  (cd "$W" && "${PGBENCH[@]}" -p "$2" -U "$3" -M prepared -c 1 -T 10 -l --log-prefix="$1" -f "$5" "$4" >/dev/null 2>"$W/$1.err") \
    || { echo "pgbench against $1 failed:" >&2; cat "$W/$1.err" >&2; exit 1; }
  cat "$W/$1".* | python3 -c '
import sys
t = sorted(int(l.split()[2]) for l in sys.stdin)
q = lambda p: t[min(len(t) - 1, int(p * len(t)))] / 1000
print(f"p50 {q(0.5):.3f} ms, p99 {q(0.99):.3f} ms over {len(t)} pages")'
}
PEER_PAGE=$(pages peer "$PORT" postgres peer "$W/page-peer.sql")
VIEW_PAGE=$(pages view "$VPORT" app tributary "$W/page-view.sql")
ratio=$(python3 -c "import re,sys; f=lambda s: float(re.search(r'p99 (\S+) ms', s).group(1)); print(f'{f(sys.argv[1])/f(sys.argv[2]):.2f}')" "$PEER_PAGE" "$VIEW_PAGE")
line "(c) 20-row keyset page over pgwire (pgbench -M prepared, 1 client, 10 s) | PostgreSQL, materialized view + unique index: $PEER_PAGE | tributary: $VIEW_PAGE | ratio $ratio at p99 | pages of 20 rows"

# --- (d) memory
line "(d) memory of the view state | peak RSS $((hwm_kb / 1024)) MB for $((ROWS / 1000))k source rows: $(( hwm_kb * 1000000 / ROWS / 1024 )) MB per million source rows (RSS after the build $((rss_kb / 1024)) MB; the process holds the input rows, the dataflow's arrangements and the serving index) | PostgreSQL's matview: $("${PSQL[@]}" -d peer -c "SELECT pg_size_pretty(pg_total_relation_size('overview'))") on disk | /proc/PID/status VmHWM"

# --- (e) rehydration after SIGTERM
kill -TERM $P; wait $P || true
s=$(now)
"$TRIB" run --config "$W/tributary.toml" 2>"$W/run2.log" & P=$!
wait_exact $P "$W/run2.log"; rehydrate=$(since "$s")
verify
reported=$(grep -o 'views rehydrated from the state store.*' "$W/run2.log" | head -1 | cut -c1-160)
snapshots=$(grep -c 'snapshot finished; streaming' "$W/run2.log" || true)
[ "$snapshots" -eq 0 ] || { echo "the restart snapshotted again ($snapshots)" >&2; exit 1; }
line "(e) restart after SIGTERM to the view exact again | initial build ${build} s | tributary ${rehydrate} s from start, no source read again ($reported) | ratio $(printf %.2f "$(echo "$build / $rehydrate" | bc -l)") | $CUSTOMERS rows equal the peer's"
kill -TERM $P; wait $P || true

if [ "$WRITE" = --write ]; then
  {
    echo "Produced by \`bench/views.sh --write\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)."
    echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $("$BIN/postgres" --version). Single runs on a shared machine: expect ±20%."
    echo
    sed 's/^/- /' "$OUT"
  } > "$W/block.md"
  python3 - "$W/block.md" bench/results.md <<'PY'
import sys, pathlib
block = pathlib.Path(sys.argv[1]).read_text()
path = pathlib.Path(sys.argv[2])
text = path.read_text()
if "<!-- views:begin -->" not in text:
    text += "\n## Views\n\n<!-- views:begin -->\n<!-- views:end -->\n"
head, rest = text.split("<!-- views:begin -->\n", 1)
_, tail = rest.split("<!-- views:end -->", 1)
path.write_text(head + "<!-- views:begin -->\n" + block + "<!-- views:end -->" + tail)
PY
fi
