#!/usr/bin/env bash
# client_credentials against the IdP as deployed (PostgreSQL and Redis), with `/healthz`
# in the same run: the share of the stack's ceiling a token costs (issue 33's bar: 90%).
# wrk and the IdP share the machine's two cores (unpinned), as in compare.sh's second
# table. Prints a Markdown table.
#
#   cargo build --release -p idp -p load
#   bash idp/bench/cc-redis.sh            # IDP=path/to/idp for another build
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNS=${CONNS:-64}
DURATION=${DURATION:-15s}
ROUNDS=${ROUNDS:-3}
IDP=${IDP:-./target/release/idp}
PG=${EMTA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS=${EMTA_TEST_REDIS_URL:-redis://127.0.0.1:6379}
IDP_PORT=${IDP_PORT:-8470}
work=$(mktemp -d /tmp/emta-cc.XXXXXX)
db="emta_cc_$RANDOM$RANDOM"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  psql "$PG" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
psql "$PG" -qc "CREATE DATABASE $db" >/dev/null

STUB_PORT=$((IDP_PORT + 1))
./target/release/load stubs --listen "127.0.0.1:$STUB_PORT" --citizens 10 >/dev/null 2>&1 &
pids+=($!)
export EMTA_REGISTRY_URL=http://127.0.0.1:$STUB_PORT EMTA_OWNERSHIP_URL=http://127.0.0.1:$STUB_PORT EMTA_SMS_URL=http://127.0.0.1:$STUB_PORT
export DATABASE_URL="${PG%/*}/$db" REDIS_URL="$REDIS" EMTA_REDIS_PREFIX="cc$RANDOM"
export EMTA_SECRET_KEY=${EMTA_SECRET_KEY:-$(openssl rand -base64 32)}
export RUST_LOG=warn
"$IDP" migrate >/dev/null 2>&1 || true
secret=$("$IDP" client add --id bench --name Bench --name-fa بنچ \
  --redirect-uri http://localhost:9/cb --service-scope presale.read | sed -n 's/^client_secret=//p')
# The budget per client is the deployment's (default 5000/s); one client flooding alone is
# what is measured here, so it is raised, and the limiter still runs on every request.
"$IDP" serve --listen "127.0.0.1:$IDP_PORT" --issuer "http://localhost:$IDP_PORT" \
  --token-rps-per-client 1000000 >"$work/idp.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://localhost:$IDP_PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://localhost:$IDP_PORT/readyz" >/dev/null || { echo "the IdP did not start" >&2; cat "$work/idp.log" >&2; exit 1; }

cat >"$work/cc.lua" <<LUA
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
LUA
basic=$(printf 'bench:%s' "$secret" | base64 -w0)
curl -fsS -H "Authorization: Basic $basic" -d grant_type=client_credentials \
  "http://localhost:$IDP_PORT/token" >/dev/null || { echo "token check failed" >&2; cat "$work/idp.log" >&2; exit 1; }

run() { # url [script]
  local out
  if [[ -n "${2:-}" ]]; then
    out=$(BASIC="$basic" wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$2" "$1")
  else
    out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$1")
  fi
  local rps p99 errs
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  echo "$rps $p99 ${errs:-0}"
}
echo "| round | /healthz req/s | p99 | client_credentials req/s | p99 | non-2xx | share of /healthz |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for r in $(seq 1 "$ROUNDS"); do
  read -r h hp99 _ < <(run "http://localhost:$IDP_PORT/healthz")
  read -r c cp99 cerr < <(run "http://localhost:$IDP_PORT/token" "$work/cc.lua")
  echo "| $r | $h | $hp99 | $c | $cp99 | $cerr | $(awk -v c="$c" -v h="$h" 'BEGIN {printf "%.0f%%", 100*c/h}') |"
done
