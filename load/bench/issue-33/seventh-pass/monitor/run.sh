#!/bin/bash
# Issue 33, seventh pass: every command Redis ran for 100 citizens (5/s for 20 s), by
# command and key family (`fam.py`), for each build. MONITOR shows a script's own
# commands too (`[0 lua]`), as INFO commandstats counts them.
export EMTA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres EMTA_TEST_REDIS_URL=redis://127.0.0.1:6379 RUST_LOG=warn
OUT=${OUT:-/tmp/seventh-monitor}
HERE=$(dirname "$0")
mkdir -p "$OUT"
for build in before after; do
  redis-cli monitor > "$OUT/$build.monitor" &
  MON=$!
  /tmp/$build/load sweep --rates 5 --secs 20 --all --out "$OUT/$build" > "$OUT/$build.log" 2>&1
  kill $MON
  python3 "$HERE/fam.py" "$OUT/$build.monitor" 100 > "$OUT/$build-by-key.txt"
  tail -1 "$OUT/$build.log"
done
