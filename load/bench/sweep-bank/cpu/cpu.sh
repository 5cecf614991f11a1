#!/bin/bash
# Whole-machine CPU seconds (user+nice+system+irq+softirq) around one sweep at RATE.
busy() { awk '/^cpu /{print ($2+$3+$4+$7+$8)/100}' /proc/stat; }
b=$(busy)
EMTA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres EMTA_TEST_REDIS_URL=redis://127.0.0.1:6379 \
  target/release/load sweep --rates 60 --secs 60 --all "$@" > /tmp/cpu-run.log 2>&1
a=$(busy)
echo "cpu_seconds $(echo "$a - $b" | bc)"
grep '^| 60 ' /tmp/cpu-run.log | tail -1
