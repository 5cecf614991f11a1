#!/bin/bash
# Issue 33, seventh pass: 60/s, rounds 1 and 2 (`../sweep/run.sh`).
RATES=60 ROUNDS="1 2" OUT=${OUT:-/tmp/seventh-60} exec bash "$(dirname "$0")/../sweep/run.sh"
