"""Name resolution between twins: which loopback address answers for a host name.

A twin has no DNS, and its routes' hosts (``*.apps.<cluster>.<domain>``) resolve nowhere. Each twin
keeps its zone in the ConfigMap ``twin-system/twin-dns`` (key ``hosts.yaml``, a map of a host
name or a ``*.`` wildcard to ``127.0.0.1:<port>``). The router twin writes its own wildcard there
when it starts (``*.<apps domain>`` → its passthrough router), so clients of that twin can reach its
routes; :func:`link` copies one twin's zone into another's, which is what lets pods and tests of a
workload twin reach the routes of a trusted twin, as DNS does between real clusters.

Clients resolve with :func:`resolve`, most specific entry first (an exact host, then the longest
wildcard suffix), and connect to the address while keeping the host name for SNI and certificate
verification (``curl --resolve`` does the same).
"""

import time

import yaml

from .kube import ApiError, path

NAMESPACE = "twin-system"
CONFIGMAP = "twin-dns"
KEY = "hosts.yaml"


def _path(name=None):
    return path("v1", "configmaps", name, NAMESPACE)


def entries(kube) -> dict:
    """The twin's zone: {host or '*.suffix': 'addr:port'}."""
    try:
        cm = kube.get(_path(CONFIGMAP))
    except ApiError as exc:
        if exc.status == 404:
            return {}
        raise
    return parse((cm.get("data") or {}).get(KEY))


def parse(text) -> dict:
    doc = yaml.safe_load(text or "{}") or {}
    if not isinstance(doc, dict):
        return {}
    return {str(k).lower(): str(v) for k, v in doc.items()}


def publish(kube, mapping: dict):
    """Add (or replace) entries in the twin's zone; other entries are kept."""
    current = entries(kube)
    current.update({k.lower(): v for k, v in mapping.items()})
    body = {"data": {KEY: yaml.safe_dump(current, sort_keys=True)}}
    try:
        kube.merge_patch(_path(CONFIGMAP), body)
    except ApiError as exc:
        if exc.status != 404:
            raise
        kube.create(_path(), {"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": CONFIGMAP, "namespace": NAMESPACE}, **body})


def published(kube, timeout=60):
    """The twin's zone once it has an entry, watching its ConfigMap (the router twin publishes when its
    controllers start, which is after ``twin up`` returns); TimeoutError naming what was seen otherwise."""
    deadline = time.monotonic() + timeout
    collection = path("v1", "configmaps", namespace=NAMESPACE)
    while True:
        listing = kube.list(collection, fieldSelector=f"metadata.name={CONFIGMAP}")
        zone = parse(((listing["items"] or [{}])[0].get("data") or {}).get(KEY))
        remaining = deadline - time.monotonic()
        if zone or remaining <= 0:
            break
        for kind, obj in kube.watch(collection, listing["metadata"]["resourceVersion"],
                                    timeout_seconds=max(1, int(remaining)),
                                    fieldSelector=f"metadata.name={CONFIGMAP}"):
            if kind == "ERROR":
                break  # e.g. 410 Gone: list again
            if kind in ("ADDED", "MODIFIED"):
                zone = parse((obj.get("data") or {}).get(KEY))
                if zone:
                    return zone
            if time.monotonic() > deadline:
                break
    if not zone:
        raise TimeoutError(f"the twin published no zone in {NAMESPACE}/{CONFIGMAP} within {timeout}s "
                           "(is its router twin running?)")
    return zone


def link(source_kube, target_kube, timeout=60):
    """Make the source twin's hosts resolvable from the target twin.

    The source's zone is copied once it exists: a link made right after the source started would
    otherwise copy nothing, and nothing of the source would ever resolve from the target.
    """
    publish(target_kube, published(source_kube, timeout))


def resolve(host: str, zone: dict):
    """(addr, port) answering for ``host``, or None when no entry covers it."""
    host = host.lower().rstrip(".")
    if host in zone:
        return _addr(zone[host])
    best = None
    for name, target in zone.items():
        if name.startswith("*.") and host.endswith(name[1:]) and (best is None or len(name) > len(best[0])):
            best = (name, target)
    return _addr(best[1]) if best else None


def _addr(value):
    host, _, port = value.rpartition(":")
    return host, int(port)


def main(argv=None):
    """``python -m twin.dns link --from STATE --to STATE`` | ``resolve HOST --state STATE``."""
    import argparse

    from .cluster import Cluster

    parser = argparse.ArgumentParser(prog="twin.dns", description="Name resolution between twin clusters.")
    sub = parser.add_subparsers(dest="command", required=True)
    link_cmd = sub.add_parser("link", help="make the routes of one twin resolvable from another")
    link_cmd.add_argument("--from", dest="source", required=True, help="state directory of the twin whose routes")
    link_cmd.add_argument("--to", dest="target", required=True, help="state directory of the twin that needs them")
    resolve_cmd = sub.add_parser("resolve", help="print the address that answers for a host, as host:port:addr:port")
    resolve_cmd.add_argument("host")
    resolve_cmd.add_argument("--state", required=True)
    resolve_cmd.add_argument("--port", type=int, default=443)
    args = parser.parse_args(argv)
    if args.command == "link":
        link(Cluster(state_dir=args.source).kube(), Cluster(state_dir=args.target).kube())
        return 0
    found = resolve(args.host, published(Cluster(state_dir=args.state).kube()))
    if not found:
        print(f"no entry of the zone covers {args.host}")
        return 1
    print(f"{args.host}:{args.port}:{found[0]}:{found[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
