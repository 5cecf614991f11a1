#!/usr/bin/env bash
# What one citizen costs each component, in CPU: the stub services (`load stubs`), the IdP
# (`idp serve`), the presale service (`presale serve`), PostgreSQL and Redis each run as
# their own process, and `load run` drives a plateau through them over HTTP. CPU time per
# process is read from /proc before and after; dividing by the citizens gives the
# per-replica figures the capacity plan in k8s/README.md is built from.
#
#   cargo build --release -p idp -p presale -p load
#   RATE=100 SECS=60 bash load/bench/processes.sh
#
# Uses the PostgreSQL and Redis in EMTA_TEST_POSTGRES_URL / EMTA_TEST_REDIS_URL (default:
# the machine's own on 5432 and 6379), with a fresh database pair and key prefix.
set -euo pipefail
cd "$(dirname "$0")/../.."
RATE=${RATE:-100}
SECS=${SECS:-60}
PG=${EMTA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS=${EMTA_TEST_REDIS_URL:-redis://127.0.0.1:6379}
bin=target/release
out=${OUT:-load/bench/processes}
work=$(mktemp -d /tmp/emta-proc.XXXXXX)
mkdir -p "$out"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
# utime + stime (+ children's, for the postmaster) in clock ticks.
ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
pg_ticks() {
  local sum=0 p
  for p in $(pgrep -x postgres || true) $(pgrep -f '^postgres:' || true); do
    sum=$((sum + $(ticks "$p" 2>/dev/null || echo 0)))
  done
  echo "$sum"
}

tag=$RANDOM$RANDOM
base=${PG%/*}
psql -q "$PG" -c "CREATE DATABASE emta_idp_$tag" -c "CREATE DATABASE emta_presale_$tag"
idp_db="$base/emta_idp_$tag"
presale_db="$base/emta_presale_$tag"
secret=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
stub_port=$(port); idp_port=$(port); presale_port=$(port)
citizens=$(python3 -c "print(int($RATE * $SECS * 1.1) + 100)")

"$bin/load" stubs --listen "127.0.0.1:$stub_port" --citizens "$citizens" --out "$work/citizens.json" >/dev/null &
pids+=($!); stub_pid=$!
export DATABASE_URL=$idp_db REDIS_URL=$REDIS EMTA_REDIS_PREFIX=proc$tag EMTA_SECRET_KEY=$secret RUST_LOG=warn
export EMTA_IDP_LISTEN=127.0.0.1:$idp_port EMTA_ISSUER=http://localhost:$idp_port
export EMTA_REGISTRY_URL=http://127.0.0.1:$stub_port EMTA_OWNERSHIP_URL=http://127.0.0.1:$stub_port EMTA_SMS_URL=http://127.0.0.1:$stub_port
export EMTA_POW_DIFFICULTY=8 EMTA_TRUST_FORWARDED_FOR=true
"$bin/idp" migrate >/dev/null
fronts="["
for m in saipa iran-khodro; do
  s=$("$bin/idp" client add --id "$m" --name "$m" --name-fa "$m" --stars 4 \
      --redirect-uri "http://localhost:$presale_port/$m/callback" | sed -n 's/^client_secret=//p')
  fronts+="{\"id\":\"$m\",\"name\":\"$m\",\"name_fa\":\"$m\",\"client_secret\":\"$s\"},"
done
echo "${fronts%,}]" > "$work/storefronts.json"
"$bin/idp" serve &
pids+=($!); idp_pid=$!
wait_http "http://127.0.0.1:$idp_port/readyz"

now=$(date +%s)
cat > "$work/license.json" <<JSON
{"license_no":"PROC-$tag","manufacturer":"saipa","model":"Shahin","units":$((RATE * SECS / 2)),
 "unit_price":8000000000,"down_payment":1000000000,"kind":"regular",
 "delivery_deadline":$((now + 300 * 86400)),"opens_at":$((now + 20)),"closes_at":$((now + 86400)),
 "selection":"queue","admission_per_min":6000,"max_active":100000,"apply_window_secs":600,
 "min_age":18,"round":null,"exclusion":null}
JSON
DATABASE_URL=$presale_db "$bin/presale" license issue --file "$work/license.json" --actor bench >/dev/null
DATABASE_URL=$presale_db EMTA_PRESALE_LISTEN=127.0.0.1:$presale_port \
  EMTA_PRESALE_URL=http://localhost:$presale_port EMTA_STOREFRONTS_FILE=$work/storefronts.json \
  EMTA_IP_PER_SEC=50 "$bin/presale" serve &
pids+=($!); presale_pid=$!
wait_http "http://127.0.0.1:$presale_port/readyz"
redis_pid=$(pgrep -x redis-server | head -1 || pgrep -f 'redis-server' | head -1)

before=("$(ticks $stub_pid)" "$(ticks $idp_pid)" "$(ticks $presale_pid)" "$(pg_ticks)" "$(ticks "$redis_pid")")
TIMEFORMAT='%U %S'
{ time "$bin/load" run --presale "http://localhost:$presale_port" --citizens "$work/citizens.json" \
    --outbox "http://127.0.0.1:$stub_port/outbox" --storefront saipa --sso-from iran-khodro \
    --shape plateau --peak "$RATE" --duration "$SECS" --returning 0.1 --wrong-code 0.05 \
    --out "$out/plateau-$RATE" > "$out/plateau-$RATE.txt" 2>/dev/null ; } 2> "$work/load.time" || true
after=("$(ticks $stub_pid)" "$(ticks $idp_pid)" "$(ticks $presale_pid)" "$(pg_ticks)" "$(ticks "$redis_pid")")
read -r lu ls < "$work/load.time"
n=$(python3 -c "import json; print(json.load(open('$out/plateau-$RATE.json'))['outcomes']['total'])")
hz=$(getconf CLK_TCK)
python3 - "$n" "$hz" "$lu" "$ls" "${before[@]}" "${after[@]}" <<'PY' | tee "$out/cpu-$RATE.md"
import sys
n, hz = int(sys.argv[1]), int(sys.argv[2])
lu, ls = float(sys.argv[3]), float(sys.argv[4])
b = list(map(int, sys.argv[5:10])); a = list(map(int, sys.argv[10:15]))
names = ["stub services (registry, ownership, SMS)", "IdP (idp serve)", "presale (presale serve)", "PostgreSQL (all backends)", "Redis"]
print(f"| component | CPU seconds | CPU ms per citizen |\n|---|---:|---:|")
for name, x, y in zip(names, b, a):
    s = (y - x) / hz
    print(f"| {name} | {s:.1f} | {1000 * s / n:.2f} |")
print(f"| load tool (its own process) | {lu + ls:.1f} | {1000 * (lu + ls) / n:.2f} |")
print(f"\n{n} citizens")
PY
tail -25 "$out/plateau-$RATE.txt"
