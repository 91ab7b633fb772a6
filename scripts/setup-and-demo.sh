#!/usr/bin/env bash
# Installs what Tributary needs on Debian, builds it, and runs a live demo:
# a throwaway PostgreSQL (wal_level=logical) with a demo table, Tributary
# snapshotting and streaming it into ./demo-state/events.jsonl while rows change.
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
cargo build --release --locked -p tributary

BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DEMO=$(mktemp -d /tmp/tributary-demo-XXXX)
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then chown postgres "$DEMO"; RUNAS=(runuser -u postgres --); fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${RUNAS[@]}" "$BIN/initdb" -D "$DEMO/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${RUNAS[@]}" "$BIN/pg_ctl" start -w -D "$DEMO/data" -l "$DEMO/server.log" \
  -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DEMO -c wal_level=logical" >/dev/null
cleanup() {
  [ -n "${TPID:-}" ] && kill "$TPID" 2>/dev/null && wait "$TPID" 2>/dev/null || true
  "${RUNAS[@]}" "$BIN/pg_ctl" stop -m fast -D "$DEMO/data" >/dev/null 2>&1 || true
  rm -rf "$DEMO"
}
trap cleanup EXIT
PSQL=("$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres)
"${PSQL[@]}" -c "CREATE DATABASE cash"
"${PSQL[@]}" -d cash -c "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(12,2));
  INSERT INTO accounts SELECT g, 'customer ' || g, g * 10 FROM generate_series(1, 5) g;"

rm -rf demo-state && mkdir -p demo-state
cat > demo-state/tributary.toml <<TOML
state_dir = "./demo-state/state"

[[source]]
name = "cash"
type = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/cash"
tables = ["public.accounts"]

[[sink]]
name = "archive"
type = "file"
path = "./demo-state/events.jsonl"
TOML

echo "== tributary check: every precondition, one line each"
./target/release/tributary check --config demo-state/tributary.toml
./target/release/tributary run --config demo-state/tributary.toml 2>demo-state/tributary.log &
TPID=$!
for _ in $(seq 100); do [ -s demo-state/events.jsonl ] && break; sleep 0.1; done
echo "== snapshot (op r), then live changes (c, u, d + tombstone):"
"${PSQL[@]}" -d cash -c "INSERT INTO accounts VALUES (6, 'new customer', 0);
  UPDATE accounts SET balance = balance + 5 WHERE id = 1;
  DELETE FROM accounts WHERE id = 2;"
sleep 1.5
kill -TERM "$TPID"; wait "$TPID"; TPID=""
cat demo-state/events.jsonl
echo "== $(wc -l < demo-state/events.jsonl) records in demo-state/events.jsonl; log in demo-state/tributary.log"
