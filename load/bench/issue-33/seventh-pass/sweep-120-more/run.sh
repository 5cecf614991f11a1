#!/bin/bash
# Issue 33, seventh pass: two more rounds at 120/s only (rounds 3 and 4), the same builds,
# the services' defaults (the adaptive budget off). Builds: `cargo build --release -p load`
# at each commit, copied to /tmp/before/load and /tmp/after/load.
export EMTA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres EMTA_TEST_REDIS_URL=redis://127.0.0.1:6379 RUST_LOG=warn
OUT=${OUT:-/tmp/seventh-120}
mkdir -p "$OUT"
for round in 3 4; do
  for build in before after; do
    /tmp/$build/load sweep --rates 120 --all --secs 60 --units-per-arrival 1 --out "$OUT/$build-$round" > "$OUT/$build-$round.log" 2>&1
    echo "$build $round"; grep -a "^| 120 " "$OUT/$build-$round.log"
  done
done
