#!/usr/bin/env bash
# Installs what Tributary needs on Debian, builds it, and runs a live demo of
# its main job: three services' databases (cash, stocks, deposits) in a
# throwaway PostgreSQL (wal_level=logical), one live SQL view joining and
# summing all three per customer, read with psql over the PostgreSQL
# protocol while rows change, through a restart; coupon events published
# to a throwaway nats-server -js join the same view; the view's changefeed
# keeps a table in a reports database equal to it; and the change stream
# of the cash database goes to ./demo-state/events.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! need cc || ! need openssl || ! { need nats-server || [ -x /usr/sbin/nats-server ]; }; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq postgresql postgresql-contrib build-essential pkg-config ca-certificates openssl nats-server
fi
if ! need cargo; then
  echo "cargo is missing: install a Rust toolchain (1.88 or newer), e.g. with rustup" >&2
  exit 1
fi
cargo build --release --locked -p tributary --bin tributary --example nats_load
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
SEND=./target/release/examples/nats_load

BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DEMO=$(mktemp -d /tmp/tributary-demo-XXXX)
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then chown postgres "$DEMO"; RUNAS=(runuser -u postgres --); fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${RUNAS[@]}" "$BIN/initdb" -D "$DEMO/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${RUNAS[@]}" "$BIN/pg_ctl" start -w -D "$DEMO/data" -l "$DEMO/server.log" \
  -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DEMO -c wal_level=logical" >/dev/null
NATSPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$NATS_SERVER" -js -a 127.0.0.1 -p "$NATSPORT" -sd "$DEMO/js" >"$DEMO/nats.log" 2>&1 &
NPID=$!
NATS=nats://127.0.0.1:$NATSPORT
cleanup() {
  [ -n "${TPID:-}" ] && kill "$TPID" 2>/dev/null && wait "$TPID" 2>/dev/null || true
  kill "$NPID" 2>/dev/null || true
  "${RUNAS[@]}" "$BIN/pg_ctl" stop -m fast -D "$DEMO/data" >/dev/null 2>&1 || true
  rm -rf "$DEMO"
}
trap cleanup EXIT
PSQL=("$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres)
for db in cash stocks deposits reports; do "${PSQL[@]}" -c "CREATE DATABASE $db"; done
"${PSQL[@]}" -d cash -c "CREATE TABLE accounts (id int PRIMARY KEY, customer_id int NOT NULL, balance numeric(14,2) NOT NULL);
  INSERT INTO accounts SELECT g, g % 50 + 1, g * 10.25 FROM generate_series(1, 200) g;"
"${PSQL[@]}" -d stocks -c "CREATE TABLE positions (id int PRIMARY KEY, customer_id int NOT NULL, symbol text NOT NULL, qty int NOT NULL, price numeric(12,4) NOT NULL);
  INSERT INTO positions SELECT g, g % 50 + 1, 'S' || g % 7, g, 1.5 * g FROM generate_series(1, 300) g;"
"${PSQL[@]}" -d deposits -c "CREATE TABLE certificates (id int PRIMARY KEY, customer_id int NOT NULL, principal numeric(14,2) NOT NULL);
  INSERT INTO certificates SELECT g, g % 40 + 1, 1000 * g FROM generate_series(1, 80) g;"
VIEWPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
until (echo > /dev/tcp/127.0.0.1/$NATSPORT) 2>/dev/null; do sleep 0.05; done
echo "== a coupon event on NATS before the start (the stream EVENTS is created with it)"
"$SEND" send "$NATS" EVENTS coupons.paid - '{"id": 1, "customer_id": 3, "amount": "25.00"}'

rm -rf demo-state && mkdir -p demo-state
{
  cat <<TOML
state_dir = "./demo-state/state"

[server]
listen = "127.0.0.1:$VIEWPORT"

[[view]]
name = "customer_overview"
sql = """
SELECT customer_id, sum(cash) AS cash, sum(stocks) AS stocks, sum(deposits) AS deposits,
       sum(coupons) AS coupons, sum(cash + stocks + deposits + coupons) AS total
FROM (SELECT customer_id, balance AS cash, 0 AS stocks, 0 AS deposits, 0 AS coupons FROM cash.public.accounts
      UNION ALL SELECT customer_id, 0, qty * price, 0, 0 FROM stocks.public.positions
      UNION ALL SELECT customer_id, 0, 0, principal, 0 FROM deposits.public.certificates
      UNION ALL SELECT customer_id, 0, 0, 0, amount FROM coupons.public.coupons) holdings
GROUP BY customer_id
"""

[[source]]
name = "coupons"
type = "nats"
url = "$NATS"
stream = "EVENTS"
subject = "coupons.>"
mode = "upsert"
columns = ["id bigint not null", "customer_id integer not null", "amount numeric(12,2) not null"]
key = ["id"]

[[sink]]
name = "report"
type = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/reports"
view = "customer_overview"

[[sink]]
name = "archive"
type = "file"
path = "./demo-state/events.jsonl"
tables = ["public.accounts"]
TOML
  for svc in cash:accounts stocks:positions deposits:certificates; do
    db=${svc%%:*}; table=${svc##*:}
    printf '\n[[source]]\nname = "%s"\ntype = "postgres"\nurl = "postgres://postgres@127.0.0.1:%s/%s"\ntables = ["public.%s"]\n' "$db" "$PORT" "$db" "$table"
  done
} > demo-state/tributary.toml

VIEW=("$BIN/psql" -X -h 127.0.0.1 -p "$VIEWPORT" -U app -d tributary)
wait_for_view() {
  for _ in $(seq 300); do "${VIEW[@]}" -Atc "SELECT 1 FROM customer_overview LIMIT 1" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the view server did not come up; see demo-state/tributary.log" >&2; exit 1
}
start() {
  ./target/release/tributary run --config demo-state/tributary.toml 2>>demo-state/tributary.log &
  TPID=$!
  wait_for_view
}

echo "== tributary check: every precondition, one line each"
./target/release/tributary check --config demo-state/tributary.toml
start
echo "== psql \\d on Tributary's endpoint (port $VIEWPORT)"
"${VIEW[@]}" -c '\d' -c '\d customer_overview'
echo "== first page, then the next one by keyset (WHERE customer_id > last ORDER BY customer_id LIMIT 5)"
"${VIEW[@]}" -c "SELECT * FROM customer_overview ORDER BY customer_id LIMIT 5"
"${VIEW[@]}" -c "SELECT * FROM customer_overview WHERE customer_id > 5 ORDER BY customer_id LIMIT 5"
echo "== customer 7 buys 100 shares at 12.3456 (stocks db) and moves 500.00 out of cash (cash db)"
"${PSQL[@]}" -d stocks -c "INSERT INTO positions VALUES (1000, 7, 'NEW', 100, 12.3456)"
"${PSQL[@]}" -d cash -c "UPDATE accounts SET balance = balance - 500 WHERE id = 6"
sleep 0.2
"${VIEW[@]}" -c "SELECT * FROM customer_overview WHERE customer_id = 7"
echo "== a coupon of 40.00 paid to customer 7, published on NATS: the same row moves"
"$SEND" send "$NATS" EVENTS coupons.paid - '{"id": 2, "customer_id": 7, "amount": "40.00"}'
sleep 0.2
"${VIEW[@]}" -c "SELECT * FROM customer_overview WHERE customer_id = 7"
echo "== the view's changefeed keeps reports.public.customer_overview (a plain PostgreSQL table) equal to it"
"${PSQL[@]}" -d reports -c "SELECT * FROM customer_overview WHERE customer_id IN (3, 7) ORDER BY customer_id"
echo "== the same SQL run from scratch by PostgreSQL over the three databases' rows (for comparison):"
"${PSQL[@]}" -d cash -Atc "SELECT sum(balance) FROM accounts WHERE customer_id = 7" | sed 's/^/   cash     /'
"${PSQL[@]}" -d stocks -Atc "SELECT sum(qty * price) FROM positions WHERE customer_id = 7" | sed 's/^/   stocks   /'
"${PSQL[@]}" -d deposits -Atc "SELECT coalesce(sum(principal), 0) FROM certificates WHERE customer_id = 7" | sed 's/^/   deposits /'
echo "== SIGTERM, a change while it is down, restart: the view comes back from the state store"
kill -TERM "$TPID"; wait "$TPID"; TPID=""
"${PSQL[@]}" -d deposits -c "DELETE FROM certificates WHERE customer_id = 7"
start
"${VIEW[@]}" -c "SELECT * FROM customer_overview WHERE customer_id = 7"
grep -o 'views rehydrated.*' demo-state/tributary.log | tail -1
kill -TERM "$TPID"; wait "$TPID"; TPID=""
echo "== the cash database's change stream: $(wc -l < demo-state/events.jsonl) records in demo-state/events.jsonl (last 2):"
tail -2 demo-state/events.jsonl
echo "== log in demo-state/tributary.log"
