#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: kbs_probe
short_description: Check a Trustee KBS from the client's side, as a guest will reach it
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Connects to the KBS URL the workloads will use (normally the external route), verifies its TLS certificate
    against the given CA for the URL's host name, and starts the KBS protocol (C(POST /kbs/v0/auth)); a KBS
    answers with a challenge and a C(kbs-session-id) cookie.
  - When verification fails, the error says what the server presented (subject, SANs, issuer), the usual cause
    of a KBS that attests nothing (a certificate without the route host in its SANs, a self-signed leaf, an edge
    route presenting the router's certificate).
  - Changes nothing; sends no evidence.
extends_documentation_fragment:
  - confidential.gpu._attributes
options:
  url:
    description: The KBS URL, for example C(https://kbs-trustee-operator-system.apps.cluster.example.com).
    type: str
    required: true
  ca_cert:
    description: The CA certificate (PEM text) the KBS certificate must chain to; the guest gets the same in initdata.
    type: str
    required: true
  resolve:
    description:
      - Addresses to use instead of DNS, as C(host:port:address:port) (like C(curl --resolve)); the host name is
        still sent (SNI) and verified. For lab clusters whose apps domain has no DNS.
    type: list
    elements: str
    default: []
  tee:
    description: TEE named in the KBS Request.
    type: str
    choices: [tdx, snp]
    default: tdx
  timeout:
    description: Seconds for the connection and each answer.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    details:
      - The probe only reads; it runs in check mode too.
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - Runs where the play runs (usually the controller); it proves the route and TLS from there. Guests in another
    network need the same host name to resolve to the route.
seealso:
  - module: confidential.gpu.trustee_info
"""

EXAMPLES = r"""
- name: Check the KBS answers over the route with our CA
  confidential.gpu.kbs_probe:
    url: https://kbs-trustee-operator-system.apps.cluster.example.com
    ca_cert: "{{ lookup('file', 'trustee-ca.crt') }}"
"""

RETURN = r"""
tls:
  description: C(verified), C(version), C(cipher), and the server certificate's C(subject), C(issuer), C(sans), C(not_after).
  returned: success
  type: dict
auth:
  description:
    - C(status) (HTTP), C(protocol_version) (the KBS protocol version it accepted), C(challenge) (true when a nonce
      came back), C(cookie) (true when C(kbs-session-id) was set).
  returned: success
  type: dict
address:
  description: The address connected to (after O(resolve)).
  returned: success
  type: str
"""

import hashlib
import http.client
import json
import socket
import ssl
import urllib.parse

try:
    from cryptography import x509
except ImportError:  # only the error message's details need it
    x509 = None

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.confidential.gpu.plugins.module_utils.trustee import parse_resolve

PROTOCOL_VERSIONS = ("0.4.0", "0.3.0", "0.2.0", "0.1.1", "0.1.0")


class _Connection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, **kwargs):
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self):
        sock = socket.create_connection(self._address, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _names(cert):
    return {
        "subject": ", ".join("{0}={1}".format(k, v) for rdn in cert.get("subject", ()) for k, v in rdn),
        "issuer": ", ".join("{0}={1}".format(k, v) for rdn in cert.get("issuer", ()) for k, v in rdn),
        "sans": ["{0}:{1}".format(k, v) for k, v in cert.get("subjectAltName", ())],
        "not_after": cert.get("notAfter"),
    }


def _presented(host, address, timeout):
    """What the server presents, read without verification (for the error message only)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(address, timeout) as sock:
            with context.wrap_socket(sock, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    if x509 is None:
        return {"der_sha256": hashlib.sha256(der).hexdigest()}
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    try:
        sans = ["DNS:" + n for n in cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        sans = []
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(), "sans": sans,
            "not_after": cert.not_valid_after_utc.isoformat() if hasattr(cert, "not_valid_after_utc")
            else cert.not_valid_after.isoformat(),
            "self_signed": cert.issuer == cert.subject}


def _auth(module, host, port, address, context, version):
    """(tls, HTTP status, body, Set-Cookie values) of one KBS Request; fails the module on TLS or network errors."""
    conn = _Connection(host, port, address, timeout=module.params["timeout"], context=context)
    body = json.dumps({"version": version, "tee": module.params["tee"], "extra-params": ""})
    try:
        conn.request("POST", "/kbs/v0/auth", body=body, headers={"Content-Type": "application/json"})
        cert = conn.sock.getpeercert()
        tls = {"verified": True, "version": conn.sock.version(), "cipher": conn.sock.cipher()[0]}
        tls.update(_names(cert))
        resp = conn.getresponse()
        return tls, resp.status, resp.read(), resp.headers.get_all("Set-Cookie") or []
    except ssl.SSLCertVerificationError as exc:
        seen = _presented(host, address, module.params["timeout"])
        module.fail_json(msg="TLS to {0} ({1}:{2}) does not verify against the given CA: {3}. The server presented: "
                             "{4}".format(host, address[0], address[1], exc.verify_message or exc,
                                          json.dumps(seen) if seen else "nothing readable"), presented=seen)
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        reason = "cannot reach the KBS at {0} ({1}:{2}): {3}".format(module.params["url"], address[0], address[1], exc)
        module.fail_json(msg=reason)
    finally:
        conn.close()
    return None  # not reached: fail_json exits


def main():
    module = AnsibleModule(argument_spec=dict(
        url=dict(type="str", required=True),
        ca_cert=dict(type="str", required=True),
        resolve=dict(type="list", elements="str", default=[]),
        tee=dict(type="str", choices=["tdx", "snp"], default="tdx"),
        timeout=dict(type="int", default=30),
    ), supports_check_mode=True)
    p = module.params
    url = urllib.parse.urlparse(p["url"])
    if url.scheme != "https" or not url.hostname:
        module.fail_json(msg="url: {0!r} is not an https URL; guests reach the KBS over HTTPS".format(p["url"]))
    host, port = url.hostname.lower(), url.port or 443
    try:
        resolve = parse_resolve(p["resolve"])
    except ValueError as exc:
        module.fail_json(msg="resolve: {0}".format(exc))
    address = resolve.get((host, port), (host, port))
    try:
        context = ssl.create_default_context(cadata=p["ca_cert"])
    except (ssl.SSLError, ValueError) as exc:
        module.fail_json(msg="ca_cert: not a PEM certificate ({0})".format(exc))
    # Newest protocol first: KBS releases refuse versions they do not know, older guests send older ones.
    for version in PROTOCOL_VERSIONS:
        tls, status, raw, cookies = _auth(module, host, port, address, context, version)
        if status == 401 and b"version" in raw.lower() and version != PROTOCOL_VERSIONS[-1]:
            continue
        break
    try:
        challenge = json.loads(raw)
    except ValueError:
        challenge = None
    auth = {"status": status, "protocol_version": version,
            "challenge": isinstance(challenge, dict) and bool(challenge.get("nonce")),
            "cookie": any(c.split("=", 1)[0].strip() == "kbs-session-id" for c in cookies)}
    if status != 200 or not auth["challenge"] or not auth["cookie"]:
        module.fail_json(msg="the server at {0} does not answer /kbs/v0/auth as a KBS does (HTTP {1}, challenge {2}, "
                             "cookie {3}): {4}".format(p["url"], status, auth["challenge"], auth["cookie"],
                                                       raw[:300].decode("utf-8", "replace")), tls=tls, auth=auth)
    module.exit_json(changed=False, tls=tls, auth=auth, address="{0}:{1}".format(*address))


if __name__ == "__main__":
    main()
