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
