#!/bin/bash
# Whole-machine CPU seconds around one 60 s plateau at RATE, for each build in turn.
busy() { awk '/^cpu /{print ($2+$3+$4+$7+$8)/100}' /proc/stat; }
export EMTA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres EMTA_TEST_REDIS_URL=redis://127.0.0.1:6379
RATE=${RATE:-60}
# The second pass ran with warnings only (INFO cost the same within the noise).
export RUST_LOG=${RUST_LOG:-warn}
for round in 1 2; do
  for build in before after; do
    b=$(busy); t0=$(date +%s.%N)
    /tmp/$build/load sweep --rates $RATE --secs 60 --out /tmp/cpu/$build-$round > /tmp/cpu/$build-$round.log 2>&1
    a=$(busy); t1=$(date +%s.%N)
    row=$(grep -a "^| $RATE " /tmp/cpu/$build-$round.log | tail -1)
    echo "$build $round cpu_seconds $(echo "$a - $b" | bc) wall $(echo "$t1 - $t0" | bc) $row"
  done
done
