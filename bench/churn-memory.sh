#!/usr/bin/env bash
# Memory under churn (issue 9): rounds of connect / join / message / leave /
# close cycles against one server, each round with new users and chats,
# then a wait past the room idle timeout. After each round it prints the
# server's anonymous memory (RssAnon) and the heap's own view of it, so a
# leak (growth every round) can be told from a high-water mark (growth
# that stops).
#
#   bench/churn-memory.sh [ROUNDS] [CYCLES_PER_ROUND] [SERVER_BIN] [BENCH_BIN]
set -euo pipefail
rounds=${1:-30}
cycles=${2:-20000}
H=${3:-target/release/huddle}
B=${4:-target/release/huddle-bench}
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
secret=$(head -c 24 /dev/urandom | base64)
idle_ms=1000
HUDDLE_JWT_SECRET=$secret HUDDLE_BIND=127.0.0.1:$port DATABASE_URL=$dir/huddle.db \
  HUDDLE_ROOM_IDLE_MS=$idle_ms HUDDLE_RATE_PER_SECOND=1000000 HUDDLE_RATE_BURST=1000000 \
  taskset -c 0 "$H" serve > "$dir/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/ready" > /dev/null && break; sleep 0.1; done
anon() { awk '/RssAnon/ {print $2}' /proc/$pid/status; }
echo "round cycles/s RssAnon_KiB"
echo "0 - $(anon)"
for r in $(seq "$rounds"); do
  rate=$(HUDDLE_JWT_SECRET=$secret taskset -c 1 "$B" --url "ws://127.0.0.1:$port/ws" --server-pid $pid \
    churn --clients 50 --duration-s 600 --max-cycles "$cycles" 2>/dev/null | grep -o '"cycles_per_s":[0-9.]*' | cut -d: -f2)
  # Past the idle timeout: every room of the round has stopped.
  sleep $(( idle_ms / 1000 + 2 ))
  echo "$r ${rate%.*} $(anon)"
done
