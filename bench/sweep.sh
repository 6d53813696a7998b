#!/usr/bin/env bash
# Issue 11's room-size sweep: set-up rate, memory per connection and
# fanout into rooms of 10, 100, 1,000 and 10,000 members, for one or more
# server binaries run interleaved (a fresh server per run, the binaries
# taking turns), so that the machine's drift hits each alike.
#
#   bench/sweep.sh OUT.jsonl NAME=SERVER_BIN [NAME=SERVER_BIN ...]
#   REPEAT=3 SIZES="10 100 1000 10000" bench/sweep.sh ...
#   target/release/huddle-bench summary OUT.jsonl
#
# Server on core 0, harness on core 1, as in BENCHMARKS.md.
set -uo pipefail
out=$1; shift
B=${B:-target/release/huddle-bench}
repeat=${REPEAT:-3}
sizes=${SIZES:-10 100 1000 10000}
env=(--server-env HUDDLE_RATE_PER_SECOND=1000000 --server-env HUDDLE_RATE_BURST=1000000
     --server-env HUDDLE_MAX_CONNECTIONS_PER_USER=100000)
messages() { case $1 in 10) echo 20000;; 50) echo 10000;; 100) echo 5000;; 1000) echo 2000;; *) echo 200;; esac; }
for i in $(seq "$repeat"); do
  for size in $sizes; do
    for bin in "$@"; do
      name=${bin%%=*} H=${bin#*=}
      run() { taskset -c 1 "$B" --server-bin "$H" --server-cpus 0 "${env[@]}" --stall-s 60 \
                --label "$name,size=$size" --out "$out" "$@" > /dev/null || echo "failed: $name $size $*" >&2; }
      run conns -C 10000 --room-size "$size" --hold-s 2
      run fanout -S "$size" -P 1 -M "$(messages "$size")" -W 16
    done
  done
done
