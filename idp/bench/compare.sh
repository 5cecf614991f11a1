#!/usr/bin/env bash
# Side-by-side benchmark, same run and same machine: emta's IdP (release build, embedded
# defaults) against node-oidc-provider 8.x (OpenID Certified) with two worker processes,
# on discovery and client_credentials, with wrk at equal connections and duration.
# Needs: wrk (apt-get install wrk), node + npm. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNS=${CONNS:-64}
# PIN=1 puts both servers on CPU 1 and wrk on CPU 0, so the load generator never takes the
# servers' core; unpinned, all three share both cores.
PIN=${PIN:-0}
# Only ever run in the background (a subshell), so `exec` keeps $! the server's own pid.
srv() { if [[ "$PIN" == 1 ]]; then exec taskset -c 1 "$@"; else exec "$@"; fi; }
gen() { if [[ "$PIN" == 1 ]]; then taskset -c 0 "$@"; else "$@"; fi; }
DURATION=${DURATION:-15s}
IDP_PORT=${IDP_PORT:-8460}
NODE_PORT=${NODE_PORT:-8600}
work=$(mktemp -d /tmp/emta-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release -p idp -p load --quiet

# node-oidc-provider, installed into a scratch folder (nothing of it is committed).
cp idp/bench/node-oidc-provider/{package.json,server.js} "$work/"
(cd "$work" && npm install --silent --no-audit --no-fund >/dev/null)
CLIENT_SECRET=bench-secret PORT=$NODE_PORT WORKERS=2 srv node "$work/server.js" >"$work/node.log" 2>&1 &
pids+=($!)

# The IdP always speaks HTTP to the registries and the SMS gateway: the stubs stand in
# (neither discovery nor client_credentials calls them).
STUB_PORT=$((IDP_PORT + 1))
./target/release/load stubs --listen "127.0.0.1:$STUB_PORT" --citizens 10 >/dev/null 2>&1 &
pids+=($!)
export EMTA_REGISTRY_URL=http://127.0.0.1:$STUB_PORT EMTA_OWNERSHIP_URL=http://127.0.0.1:$STUB_PORT EMTA_SMS_URL=http://127.0.0.1:$STUB_PORT
export DATABASE_URL="sqlite://$work/idp.db?mode=rwc" EMTA_SECRET_KEY=0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0
export RUST_LOG=warn
secret=$(./target/release/idp client add --id bench --name Bench --name-fa بنچ \
  --redirect-uri http://localhost:9/cb --service-scope presale.read | sed -n 's/^client_secret=//p')
srv ./target/release/idp serve --listen "127.0.0.1:$IDP_PORT" --issuer "http://localhost:$IDP_PORT" \
  --token-rps-per-client 1000000 >"$work/idp.log" 2>&1 &
pids+=($!)
sleep 2

cat >"$work/cc.lua" <<LUA
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
LUA

run() { # name url basic [script]
  local out
  if [[ -n "${4:-}" ]]; then
    out=$(BASIC="$3" gen wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$4" "$2")
  else
    out=$(gen wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$2")
  fi
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '| %-34s | %10s | %8s | %8s | %6s |\n' "$1" "$rps" "$p50" "$p99" "${errs:-0}"
}

echo "| server / operation                 |      req/s |      p50 |      p99 | non-2xx |"
echo "|------------------------------------|-----------:|---------:|---------:|-------:|"
emta_basic=$(printf 'bench:%s' "$secret" | base64 -w0)
# Both servers must answer a real token before anything is measured.
for target in "$IDP_PORT:$emta_basic" "$NODE_PORT:$(printf 'bench:bench-secret' | base64 -w0)"; do
  curl -fsS -H "Authorization: Basic ${target#*:}" -d grant_type=client_credentials \
    "http://localhost:${target%%:*}/token" >/dev/null || { echo "token check failed on ${target%%:*}" >&2; cat "$work"/*.log >&2; exit 1; }
done
node_basic=$(printf 'bench:bench-secret' | base64 -w0)
run "emta idp: /healthz (the stack's ceiling)" "http://localhost:$IDP_PORT/healthz" ""
run "emta idp: discovery" "http://localhost:$IDP_PORT/.well-known/openid-configuration" ""
run "node-oidc-provider: discovery" "http://localhost:$NODE_PORT/.well-known/openid-configuration" ""
run "emta idp: client_credentials" "http://localhost:$IDP_PORT/token" "$emta_basic" "$work/cc.lua"
run "node-oidc-provider: client_credentials" "http://localhost:$NODE_PORT/token" "$node_basic" "$work/cc.lua"
