"""``python -m twin up|down|status|kubeconfig|resolve|profiles|profile-from-cluster|build``: the twin cluster's command line."""

import argparse
import json
import sys

from . import build, profile as profiles
from .cluster import Cluster


def main(argv=None):
    parser = argparse.ArgumentParser(prog="twin", description="A twin of an OpenShift 4.21 cluster with confidential GPUs.")
    parser.add_argument("--name", default="default", help="cluster name (several twins can run side by side)")
    parser.add_argument("--state-dir", help="where the cluster keeps its certificates, data, PIDs and logs")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build binaries if needed, start the cluster from a hardware profile")
    up.add_argument("--profile", default="default", help=f"shipped profile ({', '.join(profiles.available())}) or a YAML path")
    up.add_argument("--conformance", metavar="CRD_DIR", help="load the real upstream CRDs from CRD_DIR (e.g. ../shared/crds)")
    sub.add_parser("down", help="stop every process of the cluster (by PID) and verify none is left")
    sub.add_parser("status", help="processes, API and nodes, as JSON")
    kc = sub.add_parser("kubeconfig", help="print the admin kubeconfig's path (or its content with --raw)")
    kc.add_argument("--raw", action="store_true")
    rs = sub.add_parser("resolve", help="print HOST:443:ADDR:PORT (curl --resolve style) for a route host of the twin")
    rs.add_argument("host", help="a host name, or a route's <name>-<namespace> (the apps domain is added)")
    sub.add_parser("profiles", help="list the shipped hardware profiles")
    pf = sub.add_parser("profile-from-cluster", help="write a hardware profile of a live cluster (reads only), for 'up --profile'")
    pf.add_argument("--kubeconfig", help="the cluster's kubeconfig (default: KUBECONFIG, then ~/.kube/config)")
    pf.add_argument("--context", help="a context of that kubeconfig")
    pf.add_argument("-o", "--output", help="the profile file to write (default: standard output)")
    sub.add_parser("build", help="build the control-plane binaries and the attestation engine now (normally done on first use)")
    args = parser.parse_args(argv)

    if args.command == "profiles":
        for name in profiles.available():
            print(f"{name:24} {profiles.load(name).get('description', '')}")
        return 0
    if args.command == "profile-from-cluster":
        import yaml

        from . import from_cluster

        profile = from_cluster.profile_from(from_cluster.read(args.kubeconfig, args.context))
        profiles.expand(profile)  # what 'up' will take, or the error it would give
        text = yaml.safe_dump(profile, sort_keys=False)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            sys.stdout.write(text)
        print("not shown by the cluster, the twin's defaults stand in:\n  " + "\n  ".join(profile["unknown"]),
              file=sys.stderr)
        return 0
    if args.command == "build":
        print(build.ensure_binaries())
        print(build.ensure_engine())  # the Trustee twin's attestation engine, so no KBS pod waits for cargo
        return 0
    cluster = Cluster(args.name, args.state_dir, die_with_parent=False)
    if args.command == "up":
        try:
            print(cluster.up(args.profile, args.conformance))
        except (RuntimeError, profiles.ProfileError) as exc:
            print(f"twin up failed: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "down":
        survivors = cluster.down()
        if survivors:
            print(f"twin down: still running after SIGKILL: {survivors}", file=sys.stderr)
            return 1
        print(f"twin {args.name}: all processes stopped; logs kept in {cluster.state / 'logs'}", file=sys.stderr)
        return 0
    if args.command == "status":
        status = cluster.status()
        print(json.dumps(status, indent=2))
        return 0 if status["up"] else 3
    if args.command == "resolve":
        from . import dns

        host = args.host
        if "." not in host:
            host = f"{host}.{profiles.load_state(cluster.state)['openshift']['apps_domain']}"
        # The router twin publishes its zone when the controllers start, a moment after `twin up`
        # returns: wait (watching) for it rather than read an empty zone.
        answer = dns.resolve(host, dns.published(cluster.kube()))
        if answer is None:
            print(f"twin {args.name}: no route or wildcard of the twin covers {host}", file=sys.stderr)
            return 1
        addr, port = answer
        print(f"{host}:443:{addr}:{port}")
        return 0
    if args.command == "kubeconfig":
        if args.raw:
            print(cluster.kubeconfig.read_text())
        else:
            print(cluster.kubeconfig)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
