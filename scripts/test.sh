#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (the
# integration tests start their own throwaway PostgreSQL clusters).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql build-essential
fi
# The Kafka sink's tests need a Kafka-compatible broker. No Kafka package
# exists in Debian; tansu (Apache-2.0, crates.io) speaks the protocol to
# librdkafka. Its build takes ~15-30 min on 2 cores, so it is installed once
# into a cache outside the repository and reused.
TANSU_ROOT="${HOME}/.cache/tributary/tansu"
if [ -z "${TRIBUTARY_TANSU:-}" ] && [ ! -x "${TANSU_ROOT}/bin/tansu" ] && ! command -v tansu >/dev/null; then
  echo "installing tansu into ${TANSU_ROOT} (once)"
  cargo install tansu --locked --features dynostore --root "${TANSU_ROOT}"
fi
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq nats-server
fi
# The views test reads pages with psycopg (the Debian package, for /usr/bin/python3).
if ! /usr/bin/python3 -c "import psycopg" >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq python3-psycopg
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --release
