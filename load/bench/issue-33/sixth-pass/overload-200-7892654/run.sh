#!/bin/bash
export EMTA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres EMTA_TEST_REDIS_URL=redis://127.0.0.1:6379 RUST_LOG=warn
OUT=${OUT:-/tmp/ov}  # before/after: /tmp/{before,after}/load
RATE=${RATE:-200}
# The after build measured had the adaptive budget on by default; it is off by default now.
export EMTA_ADMISSION_ADAPTIVE=true
for round in 1 2; do
  for build in before after; do
    /tmp/$build/load sweep --rates $RATE --secs 60 --units-per-arrival 1 --out $OUT/$build-$round > $OUT/$build-$round.log 2>&1
    echo "$build $round $(grep -a 'overload:' $OUT/$build-$round.log | tail -1)"
    echo "$build $round $(grep -a "^| $RATE " $OUT/$build-$round.log | tail -1)"
  done
done
