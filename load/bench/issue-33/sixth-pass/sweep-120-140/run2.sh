#!/bin/bash
export EMTA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres EMTA_TEST_REDIS_URL=redis://127.0.0.1:6379 RUST_LOG=warn
# The after builds measured had the adaptive budget on by default; it is off by default now.
export EMTA_ADMISSION_ADAPTIVE=true
OUT=/tmp/sw2
mkdir -p $OUT
/tmp/after/load sweep --rates 120,140 --all --secs 60 --out $OUT/after > $OUT/after.log 2>&1
echo "after"; grep -a "^| 1[24]0 " $OUT/after.log | sort -u
