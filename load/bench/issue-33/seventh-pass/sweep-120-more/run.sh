#!/bin/bash
# Issue 33, seventh pass: two more rounds at 120/s, run after `../sweep/run.sh`'s two.
RATES=120 ROUNDS="3 4" OUT=${OUT:-/tmp/seventh-120} exec bash "$(dirname "$0")/../sweep/run.sh"
