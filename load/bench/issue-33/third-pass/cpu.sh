#!/bin/bash
# The second pass's CPU run (../cpu/run.sh) with one more reading: the Redis server's read
# events (`total_reads_processed`), which count round trips (a pipeline is one), where
# `INFO commandstats` counts commands. Both builds alternated twice; /tmp/{before,after}/load.
busy() { awk '/^cpu /{print ($2+$3+$4+$7+$8)/100}' /proc/stat; }
reads() { redis-cli -u "$EMTA_TEST_REDIS_URL" INFO stats | tr -d '\r' | awk -F: '/^total_reads_processed:/{print $2}'; }
export EMTA_TEST_POSTGRES_URL=${EMTA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export EMTA_TEST_REDIS_URL=${EMTA_TEST_REDIS_URL:-redis://127.0.0.1:6379}
export RUST_LOG=${RUST_LOG:-warn}
RATE=${RATE:-60}
OUT=${OUT:-/tmp/cpu3}
mkdir -p "$OUT"
for round in 1 2; do
  for build in before after; do
    b=$(busy); r0=$(reads); t0=$(date +%s.%N)
    /tmp/$build/load sweep --rates $RATE --secs 60 --out $OUT/$build-$round > $OUT/$build-$round.log 2>&1
    a=$(busy); r1=$(reads); t1=$(date +%s.%N)
    row=$(grep -a "^| $RATE " $OUT/$build-$round.log | tail -1)
    echo "$build $round cpu_seconds $(echo "$a - $b" | bc) redis_reads $((r1 - r0)) wall $(echo "$t1 - $t0" | bc) $row"
  done
done
