#!/bin/bash
export EMTA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres EMTA_TEST_REDIS_URL=redis://127.0.0.1:6379 RUST_LOG=warn
# The after builds measured had the adaptive budget on by default; it is off by default now.
export EMTA_ADMISSION_ADAPTIVE=true
OUT=/tmp/sw
for build in before after; do
  /tmp/$build/load sweep --rates 120,140 --all --secs 60 --out $OUT/$build > $OUT/$build.log 2>&1
  echo "$build"; grep -a "^| 1[24]0 " $OUT/$build.log
done
