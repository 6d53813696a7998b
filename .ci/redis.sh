#!/usr/bin/env bash
# Makes sure redis-server is installed (the cluster tests start private
# servers of their own on free ports) and that a Redis answers on
# 127.0.0.1:6379 (the README's cluster walkthrough and the benchmarks):
# installs and starts one if needed.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server
fi
if ready; then
    exit 0
fi
# Not a service manager's job here: a plain daemon, nothing persisted.
redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
for _ in $(seq 1 60); do
    ready && exit 0
    sleep 0.5  # polling a starting server; bounded to 30 s
done
echo "Redis did not start" >&2
exit 1
