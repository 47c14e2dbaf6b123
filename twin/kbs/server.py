"""The twin KBS process: Trustee's KBS protocol over HTTP(S), reading its pod's files.

``python -m twin.kbs --root DIR [--config PATH] [--listen 127.0.0.1:0] [--engine PATH]``

``DIR`` is the pod's root directory (the operator twin's volumes written out, see
``twin.controllers.trustee``); every path in ``kbs-config.toml`` is read under it. The process
prints ``listening on HOST:PORT`` once it accepts connections, then one log line per decision.

Protocol (trustee ``kbs/docs/kbs_attestation_protocol.md``, attestation.md §5.2):

* ``POST /kbs/v0/auth`` with a Request (``version``, ``tee``, ``extra-params``) → a Challenge
  (``nonce``, ``extra-params``) and the cookie ``kbs-session-id``;
* ``POST /kbs/v0/attest`` with the cookie and an Attestation (``init-data``, ``runtime-data``,
  ``tee-evidence``) → ``{"token": <EAR>}``; the session now holds the token;
* ``GET /kbs/v0/resource/<repository>/<type>/<tag>`` with the cookie or ``Authorization: Bearer
  <token>`` → the resource as a JWE (flattened JSON) to the TEE's public key; the resource policy
  decides, with the token's claims as ``input`` and ``data.plugin`` / ``data["resource-path"]``.

Errors are ``{"type": "https://github.com/confidential-containers/kbs/errors/<Name>", "detail"}``
with 401 (not authenticated, attestation refused), 403 (``PolicyDeny``) or 404 (no such resource or
endpoint). The admin endpoints answer as ``authorization_mode = "DenyAll"`` does.
"""

import argparse
import base64
import datetime
import http.cookies
import http.server
import json
import os
import re
import secrets
import ssl
import sys
import threading
import time
import uuid
from pathlib import Path

from cryptography import x509
from joserfc import jwe, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import JWSRegistry

from .. import tee as hw
from . import config as kbs_config
from .engine import Engine, EngineError
from .attestation import AttestationError, AttestationService

ERROR_PREFIX = "https://github.com/confidential-containers/kbs/errors"
SESSION_SECONDS = 300


class TokenRegistry(JWSRegistry):
    # An EAR header carries the signer's certificate chain (x5c): far above joserfc's 512-byte default.
    max_header_length = 16384
_PART = re.compile(r"^[A-Za-z0-9._-]+$")


# What upstream KBS stores as its resource policy when none is there (kbs/sample_policies/default.rego,
# in the twin's words): the resource plugin, for any attester that is not the sample TEE.
BUILTIN_RESOURCE_POLICY = """package policy

default allow = false

allow if {
    data.plugin == "resource"
    not input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
"""


class KbsError(Exception):
    def __init__(self, status, name, detail):
        super().__init__(detail)
        self.status = status
        self.name = name
        self.detail = detail


def say(message):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    print(f"[{stamp} INFO  kbs] {message}", flush=True)


class Kbs:
    def __init__(self, root: Path, config_path: str, engine_path: Path = None):
        self.root = Path(root)
        self.conf = kbs_config.parse(self._file(config_path).decode())
        self.sessions = {}
        self.lock = threading.Lock()
        server = self.conf.get("http_server") or {}
        self.insecure_http = bool(server.get("insecure_http", False))
        token_conf = self.conf.get("attestation_token") or {}
        self.insecure_header_jwk = bool(token_conf.get("insecure_header_jwk", False))
        self.trusted_certs = []
        for path in token_conf.get("trusted_certs_paths") or []:
            try:
                self.trusted_certs.extend(x509.load_pem_x509_certificates(self._file(path)))
            except (OSError, ValueError) as exc:
                say(f"attestation_token: trusted certificate {path} not loaded ({exc})")
        # [attestation_service.verifier_config.dcap_verifier] collateral_service (the operator's templates)
        self.pcs_url = kbs_config.dcap_collateral_service(self.conf) or kbs_config.INTEL_PCS_URL
        self.as_ = AttestationService(self.root, self.conf, say, self._collateral,
                                      engine=Engine(engine_path, say=say) if engine_path else None)
        plugins = self.conf.get("plugins") or []
        self.plugins = {p.get("name") for p in plugins}
        # The resource plugin on kvstorage keeps resources in the LocalFs namespace "repository", the
        # policy engine its policy in namespace "kbs" as resource-policy.rego (trustee kbs
        # api_server.rs ApiServer::new, plugins/implementations/resource/backend.rs; twin.kbs.config).
        policy_path = kbs_config.resource_policy_path(self.conf)
        try:
            try:
                self.resource_policy = self._file(policy_path).decode()
            except FileNotFoundError:
                # ApiServer::new: set_policy(KBS_POLICY_ID, sample_policies/default.rego, overwrite=false),
                # so without a mounted policy the built-in default applies.
                say(f"resource policy {policy_path}: absent; the KBS's built-in default policy applies")
                self.resource_policy = BUILTIN_RESOURCE_POLICY
            self.as_.engine.check_policy(self.resource_policy)
        except (OSError, EngineError) as exc:
            say(f"resource policy {policy_path}: not usable ({exc}); every resource request is denied")
            self.resource_policy = None
        self._collateral_logged = False

    def _file(self, path):
        return (self.root / str(path).lstrip("/")).read_bytes()

    def _collateral(self, signed_quote):
        body = json.loads(base64.b64decode(signed_quote["body"]))
        if not self._collateral_logged:
            say(f"tdx verifier: Intel PCS ({self.pcs_url}) cannot be reached from the twin; TCB status comes from the "
                "twin's simulated Intel collateral")
            self._collateral_logged = True
        return hw.tdx_tcb_status(body.get("body", {}).get("tcb_svn"))

    # -- sessions --------------------------------------------------------------------------------

    def _session(self, session_id):
        with self.lock:
            now = time.monotonic()
            for sid in [s for s, v in self.sessions.items() if v["expires"] < now]:
                self.sessions.pop(sid, None)
            return self.sessions.get(session_id) if session_id else None

    def auth(self, body):
        # backend.rs __auth: the body is a kbs-types Request and its version must be exactly the
        # KBS's protocol version (0.4.0 at trustee 78962cd4); the engine parses it with that crate.
        try:
            request = self.as_.parse_request(body)
        except AttestationError as exc:
            raise KbsError(401, "AttestationError", f"Attestation error: {exc}")
        tee, version = request["tee"], request["version"]
        session_id = uuid.uuid4().hex
        nonce = base64.b64encode(secrets.token_bytes(32)).decode()
        with self.lock:
            self.sessions[session_id] = {"tee": tee, "nonce": nonce, "expires": time.monotonic() + SESSION_SECONDS,
                                         "token": None, "claims": None}
        say(f"auth: session {session_id[:8]} for tee {tee} (protocol {version})")
        return session_id, {"nonce": nonce, "extra-params": ""}

    def attest(self, session_id, body):
        session = self._session(session_id)
        if session is None:
            raise KbsError(401, "AttestationError", "Attestation error: no session; POST /kbs/v0/auth first "
                           "and send its kbs-session-id cookie")
        if not isinstance(body, dict):
            raise KbsError(401, "AttestationError", "Attestation error: the Attestation is not a JSON object")
        runtime = body.get("runtime-data") or {}
        if runtime.get("nonce") != session["nonce"]:
            raise KbsError(401, "AttestationError", "Attestation error: runtime-data.nonce is not the session's "
                           "challenge nonce")
        try:
            token, payload = self.as_.attest(session["tee"], body)
        except AttestationError as exc:
            say(f"attest: session {session_id[:8]} refused: {exc}")
            raise KbsError(401, "AttestationError", f"Attestation error: {exc}")
        with self.lock:
            session.update(token=token, claims=payload, tee_pubkey=runtime.get("tee-pubkey"),
                           expires=time.monotonic() + SESSION_SECONDS)
        return {"token": token}

    # -- resources -------------------------------------------------------------------------------

    def _claims_from_bearer(self, token):
        try:
            header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        except (ValueError, IndexError):
            raise KbsError(401, "TokenVerifierError", "Token Verifier error: the bearer token is not a JWT")
        keys = []
        jwk = header.get("jwk") or {}
        for der in jwk.get("x5c") or []:
            cert = x509.load_der_x509_certificate(base64.b64decode(der))
            if any(cert == trusted or cert.issuer == trusted.subject and _signed_by(cert, trusted)
                   for trusted in self.trusted_certs):
                keys.append(ECKey.import_key(cert.public_key()))
                break
        if not keys and self.insecure_header_jwk and jwk:
            keys.append(ECKey.import_key({k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y")}))
        if not keys:
            raise KbsError(401, "TokenVerifierError", "Token Verifier error: the token's signer is not trusted "
                           "(no trusted certificate matches and insecure_header_jwk is false)")
        try:
            decoded = jwt.decode(token, keys[0], algorithms=["ES256"], registry=TokenRegistry(algorithms=["ES256"]))
        except JoseError as exc:
            raise KbsError(401, "TokenVerifierError", f"Token Verifier error: {exc}")
        if decoded.claims.get("exp", 0) < time.time():
            raise KbsError(401, "TokenVerifierError", "Token Verifier error: the token has expired")
        return decoded.claims

    def resource(self, path_parts, session_id, authorization):
        if len(path_parts) != 3 or not all(_PART.match(p) and p not in (".", "..") for p in path_parts):
            raise KbsError(404, "InvalidRequestPath",
                           f"Request path {'/'.join(path_parts)} is invalid (want <repository>/<type>/<tag>)")
        session = self._session(session_id)
        claims = session and session.get("claims")
        tee_pubkey = session and session.get("tee_pubkey")
        if not claims and authorization and authorization.lower().startswith("bearer "):
            claims = self._claims_from_bearer(authorization.split(None, 1)[1].strip())
            tee_pubkey = (((claims.get("submods") or {}).get("cpu0") or {}).get("ear.veraison.annotated-evidence")
                          or {}).get("runtime_data_claims", {}).get("tee-pubkey")
        if not claims:
            raise KbsError(401, "TokenNotFound", "Attestation Token not found")
        resource_path = "/".join(path_parts)
        if self.resource_policy is None:
            raise KbsError(403, "PolicyDeny", "Access denied by policy (no usable resource policy)")
        try:
            allowed = self.as_.engine.resource_allowed(self.resource_policy, claims, list(path_parts))
        except EngineError as exc:
            say(f"resource {resource_path}: resource policy error: {exc}")
            raise KbsError(403, "PolicyDeny", f"Access denied by policy (policy error: {exc})")
        statuses = {name: s.get("ear.status") for name, s in (claims.get("submods") or {}).items()}
        if not allowed:
            say(f"resource {resource_path}: denied by the resource policy (submods {statuses})")
            raise KbsError(403, "PolicyDeny", "Access denied by policy")
        file = self.root / kbs_config.repository_file(self.conf, resource_path).lstrip("/")
        if not file.is_file():
            say(f"resource {resource_path}: not found")
            raise KbsError(404, "ResourceNotFound", f"Resource {resource_path} not found")
        say(f"resource {resource_path}: released (submods {statuses})")
        return encrypt(file.read_bytes(), tee_pubkey)


def _signed_by(cert, issuer):
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, Exception):  # noqa: BLE001 (any failure means "not signed by")
        return False


def encrypt(plaintext, tee_pubkey):
    """The KBS resource response: a flattened-JSON JWE to the TEE's key (EC: ECDH-ES+A256KW, RSA: RSA-OAEP)."""
    if not isinstance(tee_pubkey, dict):
        raise KbsError(401, "JweError", "JWE failed: the session has no tee-pubkey")
    try:
        if tee_pubkey.get("kty") == "EC":
            key = ECKey.import_key({k: tee_pubkey[k] for k in ("kty", "crv", "x", "y")})
            alg = "ECDH-ES+A256KW"
        elif tee_pubkey.get("kty") == "RSA":
            key = RSAKey.import_key({k: tee_pubkey[k] for k in ("kty", "n", "e")})
            alg = "RSA-OAEP"
        else:
            raise KbsError(401, "JweError", f"JWE failed: unsupported tee-pubkey kty {tee_pubkey.get('kty')!r}")
        obj = jwe.FlattenedJSONEncryption({"alg": alg, "enc": "A256GCM"}, plaintext)
        obj.add_recipient(None, key)
        return jwe.encrypt_json(obj, None)
    except (KeyError, JoseError, ValueError) as exc:
        raise KbsError(401, "JweError", f"JWE failed: {exc}")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    kbs = None

    def log_message(self, fmt, *args):
        pass  # decisions are logged by Kbs; access lines would drown them

    def _cookie(self):
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(raw)
        except http.cookies.CookieError:
            return None
        morsel = jar.get("kbs-session-id")
        return morsel.value if morsel else None

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise KbsError(401, "AttestationError", "Attestation error: the body is not JSON")

    def _send(self, status, payload, cookie=None):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if cookie:
            self.send_header("Set-Cookie", f"kbs-session-id={cookie}; Path=/kbs/v0; HttpOnly"
                             f"; Max-Age={SESSION_SECONDS}" + ("" if self.kbs.insecure_http else "; Secure"))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, exc):
        self._send(exc.status, {"type": f"{ERROR_PREFIX}/{exc.name}", "detail": exc.detail})

    def _route(self, method):
        path = self.path.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        try:
            if parts[:2] != ["kbs", "v0"] or len(parts) < 3:
                raise KbsError(404, "InvalidRequestPath", f"Request path {path} is invalid")
            endpoint = parts[2]
            if endpoint == "auth" and method == "POST":
                session_id, challenge = self.kbs.auth(self._body())
                return self._send(200, challenge, cookie=session_id)
            if endpoint == "attest" and method == "POST":
                session_id = self._cookie()
                return self._send(200, self.kbs.attest(session_id, self._body()), cookie=session_id)
            if endpoint == "resource" and method == "GET":
                return self._send(200, self.kbs.resource(parts[3:], self._cookie(), self.headers.get("Authorization")))
            if endpoint in ("attestation-policy", "resource-policy", "reference-value") or (
                    endpoint == "resource" and method == "POST"):
                raise KbsError(401, "AdminAuthAccess", f"admin access denied for endpoint {endpoint}: "
                               "authorization_mode is DenyAll (policies and reference values come from ConfigMaps)")
            raise KbsError(404, "PluginNotFound", f"Plugin {endpoint} not found")
        except KbsError as exc:
            self._error(exc)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._route("GET")

    def do_POST(self):  # noqa: N802
        self._route("POST")


TLS_MINIMUM = {"old": ssl.TLSVersion.TLSv1_2, "intermediate": ssl.TLSVersion.TLSv1_2,
               "modern": ssl.TLSVersion.TLSv1_3}


def serve(root, config_path, listen, engine_path=None):
    kbs = Kbs(root, config_path, engine_path)
    host, _, port = listen.rpartition(":")
    handler = type("KbsHandler", (Handler,), {"kbs": kbs})
    httpd = http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler)
    httpd.daemon_threads = True
    server_conf = kbs.conf.get("http_server") or {}
    scheme = "http"
    if not kbs.insecure_http:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_MINIMUM.get(server_conf.get("tls_profile", "intermediate"), ssl.TLSVersion.TLSv1_2)
        if server_conf.get("tls_profile") == "custom" and server_conf.get("tls_min_version"):
            ctx.minimum_version = getattr(ssl.TLSVersion, "TLSv" + server_conf["tls_min_version"].replace(".", "_"))
        try:
            ctx.load_cert_chain(str(root / server_conf["certificate"].lstrip("/")),
                                str(root / server_conf["private_key"].lstrip("/")))
        except (KeyError, OSError, ssl.SSLError) as exc:
            say(f"HTTPS initialization failed: {exc}")
            raise SystemExit(2)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        scheme = "https"
    bound = httpd.server_address
    say(f"listening on {bound[0]}:{bound[1]} ({scheme}; config {config_path}; policies in regorus, "
        f"engine {kbs.as_.engine.path})")
    httpd.serve_forever()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="twin.kbs")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--config", default=kbs_config.KBS_CONFIG)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--engine", type=Path, help="the attestation engine (default: built on first use)")
    args = parser.parse_args(argv)
    try:
        serve(args.root, args.config, args.listen, args.engine)
    except (OSError, ValueError) as exc:
        say(f"KBS cannot start: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
