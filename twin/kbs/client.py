"""A KBS client playing the guest's attestation agent against a KBS (the twin's or, in principle, any).

It speaks the KBS protocol over HTTPS with certificate verification against a given CA, resolving
the KBS host through a twin zone (``twin.dns``) when there is no DNS for it, while SNI and the
hostname check use the URL's host, as the guest's agent would. The TEE key pair is ephemeral (EC
P-256), its public half travels in ``runtime-data.tee-pubkey``, and resources come back as JWEs
only that key opens.

    client = KbsClient("https://kbs-trustee-operator-system.apps.x.example.com", ca_pem, zone=zone)
    vm = tee.launch(node, "4.21.9", initdata_toml=toml)
    token = client.attest(vm, initdata_toml=toml)
    secret = client.resource("default/kbsres1/key1")
"""

import base64
import http.client
import json
import socket
import ssl
import urllib.parse

from joserfc import jwe
from joserfc.jwk import ECKey

from .. import dns


class KbsClientError(Exception):
    """A KBS error response: HTTP status, the error type's last segment, and the detail."""

    def __init__(self, status, kind, detail):
        super().__init__(f"{status} {kind}: {detail}")
        self.status = status
        self.kind = kind
        self.detail = detail


class _Connection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self):
        sock = socket.create_connection(self._address, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PlainConnection(http.client.HTTPConnection):
    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection(self._address, self.timeout)


class KbsClient:
    def __init__(self, url, ca_pem=None, zone=None, timeout=30, protocol_version="0.4.0"):
        parsed = urllib.parse.urlparse(url)
        self.scheme = parsed.scheme
        self.host = parsed.hostname
        self.port = parsed.port or (443 if self.scheme == "https" else 80)
        self.address = (dns.resolve(self.host, zone) if zone else None) or (self.host, self.port)
        self.timeout = timeout
        self.version = protocol_version
        self.context = None
        if self.scheme == "https":
            self.context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
        self.cookie = None
        self.key = None
        self.token = None
        self.last_peer_certificate = None

    def request(self, method, path, body=None, headers=None):
        if self.scheme == "https":
            conn = _Connection(self.host, self.port, self.address, timeout=self.timeout, context=self.context)
        else:
            conn = _PlainConnection(self.host, self.port, self.address, timeout=self.timeout)
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = f"kbs-session-id={self.cookie}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            if self.scheme == "https":
                self.last_peer_certificate = conn.sock.getpeercert()
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        for value in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            if name.strip() == "kbs-session-id":
                self.cookie = rest.split(";", 1)[0]
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        if resp.status >= 400:
            kind = (payload or {}).get("type", "").rsplit("/", 1)[-1] if isinstance(payload, dict) else ""
            detail = payload.get("detail") if isinstance(payload, dict) else payload
            raise KbsClientError(resp.status, kind, detail)
        return payload

    # -- the protocol --------------------------------------------------------------------------

    def auth(self, tee, additional_tees=()):
        request = {"version": self.version, "tee": tee, "extra-params": {"tee-metadata": {
            "primary_tee": {"tee": tee}, "additional_tees": [{"tee": t} for t in additional_tees]}}}
        return self.request("POST", "/kbs/v0/auth", request)

    def attest(self, vm, initdata_toml=None):
        """Run auth + attest for a simulated VM (``twin.tee.GuestVM``); returns the token."""
        challenge = self.auth(vm.tee, ["nvidia"] if vm.gpus else ())
        self.key = ECKey.generate_key("P-256")
        runtime_data = {"nonce": challenge["nonce"],
                        "tee-pubkey": dict(self.key.as_dict(private=False), alg="ECDH-ES+A256KW")}
        attestation = {"runtime-data": runtime_data,
                       "tee-evidence": {"primary_evidence": vm.evidence(runtime_data),
                                        "additional_evidence": vm.additional_evidence(runtime_data) or ""}}
        if initdata_toml is not None:
            attestation["init-data"] = {"format": "toml", "body": initdata_toml}
        self.token = self.request("POST", "/kbs/v0/attest", attestation)["token"]
        return self.token

    def resource(self, resource_path, bearer=None):
        """The plaintext of ``<repository>/<type>/<tag>`` (decrypted with the TEE key)."""
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
        response = self.request("GET", f"/kbs/v0/resource/{resource_path}", headers=headers)
        return jwe.decrypt_json(response, self.key).plaintext


def token_claims(token):
    """The payload of a JWT, unverified (tests check signatures separately)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def main(argv=None):
    """``python -m twin.kbs.client --url U --ca-file F --state STATE [--node N] [--initdata F] [--resource P]``.

    Launches a simulated VM on node N of the twin at STATE (its profile's hardware) with the initdata
    (rendered for U and the CA when no file is given), attests to the KBS at U resolving it through
    that twin's zone, fetches the resource, and prints what came back as JSON. Exit 1 when refused.
    """
    import argparse
    import hashlib

    import yaml

    from .. import initdata, tee
    from ..cluster import Cluster

    parser = argparse.ArgumentParser(prog="twin.kbs.client", description="Attest a simulated VM to a KBS.")
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--state", required=True, help="state directory of the twin the VM runs on (its zone resolves)")
    parser.add_argument("--node", help="node the VM runs on (default: the first TEE node)")
    parser.add_argument("--initdata", help="initdata TOML file (default: rendered for --url and the CA)")
    parser.add_argument("--resource", help="resource to fetch, <repository>/<type>/<tag>")
    args = parser.parse_args(argv)
    cluster = Cluster(state_dir=args.state)
    profile = yaml.safe_load((cluster.state / "profile.yaml").read_text())
    nodes = [n for n in profile["nodes"] if (n.get("tee") or {}).get("type")]
    node = next((n for n in nodes if n["name"] == args.node), None) if args.node else (nodes[0] if nodes else None)
    if node is None:
        print(json.dumps({"error": f"no TEE node {args.node or ''} in the twin's profile"}))
        return 1
    ca = open(args.ca_file, encoding="utf-8").read()
    toml = open(args.initdata, encoding="utf-8").read() if args.initdata else initdata.document(args.url, kbs_cert=ca)
    client = KbsClient(args.url, ca, zone=dns.entries(cluster.kube()))
    vm = tee.launch(node, profile["openshift"]["version"], initdata_toml=toml)
    out = {"node": node["name"], "tee": vm.tee}
    try:
        claims = token_claims(client.attest(vm, initdata_toml=toml))
        out["submods"] = {n: {"status": s["ear.status"], "vector": {k: v for k, v in
                                                                     s["ear.trustworthiness-vector"].items() if v}}
                          for n, s in claims["submods"].items()}
        if args.resource:
            out["resource_sha256"] = hashlib.sha256(client.resource(args.resource)).hexdigest()
    except KbsClientError as exc:
        out["error"] = {"status": exc.status, "type": exc.kind, "detail": exc.detail}
        print(json.dumps(out))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
