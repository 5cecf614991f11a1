"""The IdP's way out, checked on a rendered overlay (issue 32, point 7).

The IdP posts back-channel logout tokens to manufacturers and fetches their jwks_uri keys,
on hosts anywhere; it must reach them through the egress proxy and nothing else, and the
proxy must reach no more than TCP 443. Asserts, over the NetworkPolicies that select each
pod (as Kubernetes combines them: any rule of any selecting policy allows):

  (a) the IdP pods may reach the proxy pods on the proxy's port (their egress and the
      proxy's ingress), and their HTTPS_PROXY names the proxy's Service on that port;
  (b) no IdP egress rule reaches everywhere: no 0.0.0.0/0 or ::/0 block, no rule without
      destinations or without ports;
  (c) the proxy's egress is TCP 443 only, apart from DNS to kube-dns;
  (d) only the IdP pods may reach the proxy.

Usage: python check-egress.py RENDERED.yaml [LABEL]  (kustomize build output); exit 1 on
failure.
"""
import sys
from urllib.parse import urlsplit

import yaml

IDP, PROXY = "emta-idp", "egress-proxy"
KUBE_DNS = ({"kubernetes.io/metadata.name": "kube-system"}, {"k8s-app": "kube-dns"})

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
failures = []
label = sys.argv[2] if len(sys.argv) > 2 else sys.argv[1]


def find(kind, name):
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)


def matches(selector, labels):
    """A LabelSelector against a label set; an empty selector selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pod_labels(deployment):
    d = find("Deployment", deployment)
    return d["spec"]["template"]["metadata"]["labels"] if d else None


def rules(labels, direction):
    """Whether some policy isolates these pods in `direction` (Egress/Ingress), and every
    (policy, rule) of that direction that applies to them."""
    isolated, out = False, []
    for p in docs:
        if p["kind"] != "NetworkPolicy" or not matches(p["spec"]["podSelector"], labels):
            continue
        types = p["spec"].get("policyTypes") or ["Ingress"]
        if direction in types:
            isolated = True
            key = "egress" if direction == "Egress" else "ingress"
            out += [(p["metadata"]["name"], r) for r in p["spec"].get(key) or []]
    return isolated, out


def ports(rule):
    """(protocol, port) pairs; a range (endPort) is kept as "port-endPort"."""
    return [
        (p.get("protocol", "TCP"), f"{p.get('port')}-{p['endPort']}" if "endPort" in p else p.get("port"))
        for p in rule.get("ports") or []
    ]


def is_own_pods(peer, labels):
    """A peer that selects these pods, in the policy's own namespace."""
    return (
        "ipBlock" not in peer
        and "namespaceSelector" not in peer
        and "podSelector" in peer
        and matches(peer["podSelector"], labels)
    )


def selects_others(peer):
    """Whether a peer's podSelector also selects another Deployment's pods than the IdP's."""
    return any(
        matches(peer["podSelector"], d["spec"]["template"]["metadata"]["labels"])
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] != IDP
    )


def is_kube_dns(peer):
    return peer.get("namespaceSelector", {}).get("matchLabels") == KUBE_DNS[0] and peer.get(
        "podSelector", {}
    ).get("matchLabels") == KUBE_DNS[1]


idp, proxy = pod_labels(IDP), pod_labels(PROXY)
if idp is None:
    sys.exit(f"{label}: check-egress: no Deployment {IDP}")
if proxy is None:
    failures.append(f"no Deployment {PROXY}: the IdP has no egress proxy")
    proxy = {"app.kubernetes.io/name": PROXY}
service = find("Service", PROXY)
proxy_port = None
if service is None:
    failures.append(f"no Service {PROXY}")
else:
    svc_port = service["spec"]["ports"][0]
    target = svc_port.get("targetPort", svc_port["port"])
    if isinstance(target, str):
        container = find("Deployment", PROXY)["spec"]["template"]["spec"]["containers"][0]
        target = next(p["containerPort"] for p in container["ports"] if p.get("name") == target)
    proxy_port = target  # what a NetworkPolicy sees: the pod's port

# (a) the IdP reaches the proxy on its port, and is told to use it.
isolated, egress_idp = rules(idp, "Egress")
if not isolated:
    failures.append("the IdP pods are not egress-isolated by any NetworkPolicy")
if not any(
    any(is_own_pods(peer, proxy) for peer in r.get("to") or [])
    and ("TCP", proxy_port) in ports(r)
    for _, r in egress_idp
):
    failures.append(f"(a) no egress rule lets the IdP pods reach {PROXY} on its port ({proxy_port})")
container = find("Deployment", IDP)["spec"]["template"]["spec"]["containers"][0]
env = {}
for source in container.get("envFrom") or []:
    cm = find("ConfigMap", (source.get("configMapRef") or {}).get("name"))
    env.update((cm or {}).get("data") or {})
env.update({e["name"]: e.get("value") for e in container.get("env") or []})
https_proxy = urlsplit(env.get("HTTPS_PROXY") or "")
if https_proxy.hostname is None or https_proxy.hostname.split(".")[0] != PROXY or (
    service and https_proxy.port != service["spec"]["ports"][0]["port"]
):
    failures.append(f"(a) the IdP's HTTPS_PROXY ({env.get('HTTPS_PROXY')}) is not the {PROXY} Service")

# (b) no direct way out to everywhere.
for name, r in egress_idp:
    if not r.get("to"):
        failures.append(f"(b) {name}: an IdP egress rule with no destinations (everywhere)")
    for peer in r.get("to") or []:
        cidr = peer.get("ipBlock", {}).get("cidr")
        if cidr in ("0.0.0.0/0", "::/0"):
            failures.append(f"(b) {name}: the IdP pods may reach {cidr} directly")
    if not ports(r):
        failures.append(f"(b) {name}: an IdP egress rule without ports")

# (c) the proxy: TCP 443 out, and DNS.
isolated, egress_proxy = rules(proxy, "Egress")
if not isolated:
    failures.append("(c) the proxy pods are not egress-isolated by any NetworkPolicy")
for name, r in egress_proxy:
    peers = r.get("to") or []
    if peers and all(is_kube_dns(p) for p in peers):
        allowed = {("UDP", 53), ("TCP", 53)}
    else:
        allowed = {("TCP", 443)}
    if not ports(r) or not set(ports(r)) <= allowed:
        failures.append(f"(c) {name}: a proxy egress rule allows {ports(r) or 'every port'}")
if not any(("TCP", 443) in ports(r) for _, r in egress_proxy):
    failures.append("(c) the proxy may not reach TCP 443")

# (d) only the IdP reaches the proxy (and (a): the IdP does).
isolated, ingress_proxy = rules(proxy, "Ingress")
if not isolated:
    failures.append("(d) the proxy pods are not ingress-isolated by any NetworkPolicy")
if not any(
    any(is_own_pods(peer, idp) for peer in r.get("from") or []) and ("TCP", proxy_port) in ports(r)
    for _, r in ingress_proxy
):
    failures.append(f"(a) no ingress rule lets the IdP pods into {PROXY} on its port ({proxy_port})")
for name, r in ingress_proxy:
    peers = r.get("from") or []
    if not peers or not all(is_own_pods(p, idp) and not selects_others(p) for p in peers):
        failures.append(f"(d) {name}: pods other than the IdP's may reach the proxy")

for f in failures:
    print(f"{label}: check-egress: {f}", file=sys.stderr)
print(f"{label}: egress check {'FAILED' if failures else 'passed'} ({len(failures)} problems)")
sys.exit(1 if failures else 0)
