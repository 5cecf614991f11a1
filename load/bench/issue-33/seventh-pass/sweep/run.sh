#!/bin/bash
# Issue 33, seventh pass: the build before (5f3ce45) and after (b87f588), alternated, the
# services' defaults (the adaptive budget off). Builds: `cargo build --release -p load` at
# each commit, copied to /tmp/before/load and /tmp/after/load.
# RATES (default 100,120), ROUNDS (default "1 2") and OUT choose the runs: sweep-60/ and
# sweep-120-more/ call this with their own.
export EMTA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres EMTA_TEST_REDIS_URL=redis://127.0.0.1:6379 RUST_LOG=warn
RATES=${RATES:-100,120}
ROUNDS=${ROUNDS:-1 2}
OUT=${OUT:-/tmp/seventh}
mkdir -p "$OUT"
for round in $ROUNDS; do
  for build in before after; do
    /tmp/$build/load sweep --rates "$RATES" --all --secs 60 --units-per-arrival 1 --out "$OUT/$build-$round" > "$OUT/$build-$round.log" 2>&1
    echo "$build $round"
    for rate in ${RATES//,/ }; do grep -a "^| $rate " "$OUT/$build-$round.log"; done
  done
done
