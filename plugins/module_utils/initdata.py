# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""initdata for confidential containers: render, validate, hash, bind to the TEE, encode.

PRIVATE to this collection. The rules (shared/reference/attestation.md, section 1) in short:

* initdata is a TOML document ``version = "0.1.0"``, ``algorithm = "sha256|sha384|sha512"`` and a
  ``[data]`` table of strings (``aa.toml``, ``cdh.toml``, ``policy.rego``).
* Every component hashes the exact UTF-8 bytes of the document with the algorithm it names, so
  the bytes we hash are the bytes we encode: nothing here re-serialises a parsed document.
* The digest is bound to the TEE by truncating or zero-padding it at the end: 48 bytes for the
  TDX MRCONFIGID, 32 bytes for the SNP HOSTDATA.
* The pod annotation ``io.katacontainers.config.hypervisor.cc_init_data`` carries
  ``base64(gzip(toml))``: standard alphabet with padding, one line, one gzip member (the Go shim
  and runtime-rs must decode it to the same bytes).

Every malformed input raises :class:`InitdataError` (a ValueError) with a message that names the
field and what would be valid; nothing else escapes on bad input.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import re
import zlib

try:
    import tomllib
except ImportError:  # Python < 3.11 on a managed node; reported when a parse is needed
    tomllib = None

__all__ = [
    "ALGORITHMS",
    "ANNOTATION_KEY",
    "IMAGE_OPTIONS",
    "InitdataError",
    "MAX_ANNOTATION_BYTES",
    "MAX_TOML_BYTES",
    "POLICY_PRESETS",
    "TEE_SIZES",
    "VERSION",
    "bindings",
    "decode_annotation",
    "digest",
    "encode_annotation",
    "policy_preset",
    "render",
    "tee_binding",
    "validate",
]

ANNOTATION_KEY = "io.katacontainers.config.hypervisor.cc_init_data"
VERSION = "0.1.0"
ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
TEE_SIZES = {"tdx": 48, "snp": 32}
CDH_SOCKET = "unix:///run/confidential-containers/cdh.sock"

# Kubernetes rejects an object whose annotations together exceed 256 KiB.
MAX_ANNOTATION_BYTES = 256 * 1024
# Far above any real initdata; bounds memory when decoding hostile input (a gzip bomb).
MAX_TOML_BYTES = 4 * 1024 * 1024

IMAGE_OPTIONS = (
    "image_security_policy_uri",
    "image_security_policy",
    "sigstore_config_uri",
    "authenticated_registry_credentials_uri",
    "registry_configuration_uri",
    "extra_root_certificates",
    "max_concurrent_layer_downloads_per_image",
    "work_dir",
    "image_pull_proxy",
)
PROXY_OPTIONS = ("https_proxy", "http_proxy", "no_proxy")


class InitdataError(ValueError):
    """Malformed initdata, annotation or arguments. ``field`` names what was wrong."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------------------------
# agent policy presets

# Every request the kata agent of OpenShift sandboxed containers knows. A request with no rule is
# denied by the agent, so a preset must name them all; newer agents added the last three.
AGENT_REQUESTS = (
    "AddARPNeighborsRequest", "AddSwapRequest", "CloseStdinRequest", "CopyFileRequest",
    "CreateContainerRequest", "CreateSandboxRequest", "DestroySandboxRequest", "ExecProcessRequest",
    "GetDiagnosticDataRequest", "GetMetricsRequest", "GetOOMEventRequest", "GuestDetailsRequest",
    "ListInterfacesRequest", "ListRoutesRequest", "MemAgentCompactConfig", "MemAgentMemcgConfig",
    "MemHotplugByProbeRequest", "OnlineCPUMemRequest", "PauseContainerRequest", "PullImageRequest",
    "ReadStreamRequest", "RemoveContainerRequest", "RemoveStaleVirtiofsShareMountsRequest",
    "ReseedRandomDevRequest", "ResumeContainerRequest", "SetGuestDateTimeRequest", "SetPolicyRequest",
    "SignalProcessRequest", "StartContainerRequest", "StartTracingRequest", "StatsContainerRequest",
    "StopTracingRequest", "TtyWinResizeRequest", "UpdateContainerRequest", "UpdateEphemeralMountsRequest",
    "UpdateInterfaceRequest", "UpdateRoutesRequest", "WaitProcessRequest", "WriteStreamRequest",
)

# restrictive: the host cannot exec into containers (oc exec) or read their output (oc logs).
# allow-all: everything, as the image's default policy; for debugging only.
POLICY_PRESETS = {
    "restrictive": frozenset({"ExecProcessRequest", "ReadStreamRequest"}),
    "allow-all": frozenset(),
}


def policy_preset(name: str) -> str:
    """The Rego text of a preset agent policy (``restrictive`` or ``allow-all``)."""
    if name not in POLICY_PRESETS:
        raise InitdataError(
            "policy: unknown preset {0!r}; valid presets: {1}".format(name, ", ".join(sorted(POLICY_PRESETS))),
            field="policy")
    denied = POLICY_PRESETS[name]
    lines = ["package agent_policy", ""]
    lines.extend("default {0} := {1}".format(req, "false" if req in denied else "true") for req in AGENT_REQUESTS)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# helpers


def _utf8(text, field):
    if not isinstance(text, str):
        raise InitdataError("{0}: expected text, got {1}".format(field, type(text).__name__), field=field)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InitdataError("{0}: not valid UTF-8 text ({1})".format(field, exc.reason), field=field)


def _parse_toml(text, field):
    if tomllib is None:
        raise InitdataError("parsing TOML needs Python 3.11 or later (tomllib)", field=field)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InitdataError("{0}: not valid TOML: {1}".format(field, exc), field=field)
    except (TypeError, ValueError, RecursionError) as exc:  # e.g. absurd nesting
        raise InitdataError("{0}: not valid TOML: {1}".format(field, exc), field=field)


def _algorithm(doc, field="algorithm"):
    algorithm = doc.get("algorithm")
    if algorithm not in ALGORITHMS:
        what = "is missing" if algorithm is None else "{0!r} is not supported".format(algorithm)
        raise InitdataError(
            "algorithm: {0}; valid values (exact, lower-case): {1}".format(what, ", ".join(sorted(ALGORITHMS))),
            field=field)
    return algorithm


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _toml_basic(value):
    """A TOML basic string: every character that needs it escaped."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif _CONTROL.match(ch):
            out.append("\\u{0:04x}".format(ord(ch)))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_multiline(value):
    """A multi-line TOML string that reads back as exactly ``value``.

    A literal string keeps embedded documents readable; when the text holds ''' or a control
    character a literal string cannot carry, fall back to an escaped basic string.
    """
    if "'''" not in value and not _CONTROL.search(value) and not value.endswith("'"):
        return "'''\n" + value + "'''"
    return _toml_basic(value)


_PEM = re.compile(r"^(-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+\n-----END CERTIFICATE-----\n?)+$")


def _pem(cert, field):
    if cert is None:
        return None
    text = _utf8(cert, field).decode("utf-8").replace("\r\n", "\n").strip() + "\n"
    if not _PEM.match(text):
        raise InitdataError(
            "{0}: expected one or more PEM certificates (-----BEGIN CERTIFICATE----- ... "
            "-----END CERTIFICATE-----)".format(field), field=field)
    return text


def _check_url(url, field, allow_insecure_http):
    if not isinstance(url, str) or not url:
        raise InitdataError("{0}: a KBS URL is required (https://host[:port])".format(field), field=field)
    match = re.match(r"^(https?)://([^/\s'\"\\]+)(/[^\s'\"\\]*)?$", url)
    if not match:
        raise InitdataError(
            "{0}: {1!r} is not an absolute URL; expected https://host[:port][/path]".format(field, url),
            field=field)
    if match.group(1) == "http" and not allow_insecure_http:
        raise InitdataError(
            "{0}: {1!r} uses plain http; use https, or set allow_insecure_http (Trustee "
            "insecure_http = true) to opt in explicitly".format(field, url), field=field)
    return match.group(1)


# --------------------------------------------------------------------------------------------
# the four core functions


def digest(toml_text: str) -> bytes:
    """Hash of the exact UTF-8 bytes of ``toml_text`` with the algorithm the document names.

    Only the ``algorithm`` is checked; use :func:`validate` for the whole document.
    """
    raw = _utf8(toml_text, "initdata")
    if len(raw) > MAX_TOML_BYTES:
        raise InitdataError("initdata: {0} bytes is larger than the {1} bytes accepted".format(
            len(raw), MAX_TOML_BYTES), field="initdata")
    doc = _parse_toml(toml_text, "initdata")
    return ALGORITHMS[_algorithm(doc)](raw).digest()


def tee_binding(digest: bytes, tee: str) -> bytes:  # pylint: disable=redefined-outer-name
    """The value the TEE reports for an initdata digest: MRCONFIGID (TDX, 48 bytes) or HOSTDATA (SNP, 32).

    Longer digests keep their first bytes; shorter ones get zero bytes appended.
    """
    if not isinstance(digest, (bytes, bytearray)):
        raise InitdataError("digest: expected bytes, got {0}".format(type(digest).__name__), field="digest")
    size = TEE_SIZES.get(tee) if isinstance(tee, str) else None
    if size is None:
        raise InitdataError("tee: {0!r} is not supported; valid values: {1}".format(
            tee, ", ".join(sorted(TEE_SIZES))), field="tee")
    return bytes(digest[:size]) + b"\x00" * max(0, size - len(digest))


def encode_annotation(toml_text: str) -> str:
    """``base64(gzip(toml_text))``: standard alphabet, padded, one line, one gzip member.

    mtime is 0 so the same text always gives the same annotation here; other encoders give other
    bytes for the same text, which is harmless because only the decoded bytes are hashed.
    """
    raw = _utf8(toml_text, "initdata")
    if len(raw) > MAX_TOML_BYTES:
        raise InitdataError("initdata: {0} bytes is larger than the {1} bytes accepted".format(
            len(raw), MAX_TOML_BYTES), field="initdata")
    value = base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")
    if len(value) > MAX_ANNOTATION_BYTES:
        raise InitdataError(
            "initdata: the annotation would be {0} bytes, above the {1} bytes Kubernetes allows for all "
            "annotations of a pod; shorten the policy".format(len(value), MAX_ANNOTATION_BYTES),
            field="initdata")
    return value


def decode_annotation(value: str) -> str:
    """The TOML text inside an annotation value; any gzip encoder's output is accepted.

    Refuses, with the reason: non-text, line breaks or spaces, anything but canonical standard
    base64 (url-safe alphabet, missing or extra padding), base64 of plain text instead of gzip,
    truncated or corrupt gzip, several gzip members or trailing bytes, more than
    :data:`MAX_TOML_BYTES` once inflated, and text that is not UTF-8.
    """
    field = "annotation"
    if not isinstance(value, str):
        raise InitdataError("annotation: expected text, got {0}".format(type(value).__name__), field=field)
    if len(value) > MAX_ANNOTATION_BYTES:
        raise InitdataError("annotation: {0} characters is above the {1} Kubernetes allows".format(
            len(value), MAX_ANNOTATION_BYTES), field=field)
    if not value:
        raise InitdataError("annotation: the value is empty", field=field)
    if re.search(r"\s", value):
        raise InitdataError(
            "annotation: contains line breaks or spaces; it must be one line of base64 "
            "(runtime-rs rejects wrapped base64: encode with `gzip -c | base64 -w0`)", field=field)
    if re.search(r"[-_]", value):
        raise InitdataError("annotation: uses the URL-safe base64 alphabet ('-' or '_'); the runtime "
                            "expects standard base64 ('+' and '/')", field=field)
    try:
        packed = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InitdataError("annotation: not valid standard base64 ({0}); lengths must be a multiple "
                            "of 4 with '=' padding".format(exc), field=field)
    if base64.b64encode(packed).decode("ascii") != value:
        raise InitdataError("annotation: base64 is not canonical (wrong padding or stray bits)", field=field)
    if packed[:2] != b"\x1f\x8b":
        hint = ""
        try:
            plain = packed.decode("utf-8")
            if "version" in plain or "algorithm" in plain or "[data]" in plain:
                hint = ": it is base64 of plain TOML, but the runtime expects base64 of gzip (`gzip -c | base64 -w0`)"
        except UnicodeDecodeError:
            pass
        raise InitdataError("annotation: the decoded bytes are not a gzip stream" + (hint or
                            " (no 1f 8b magic); the runtime expects base64(gzip(toml))"), field=field)
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(packed, MAX_TOML_BYTES + 1)
    except zlib.error as exc:
        raise InitdataError("annotation: corrupt gzip stream ({0})".format(exc), field=field)
    if len(raw) > MAX_TOML_BYTES or inflater.unconsumed_tail:
        raise InitdataError("annotation: inflates to more than {0} bytes".format(MAX_TOML_BYTES), field=field)
    if not inflater.eof:
        raise InitdataError("annotation: truncated gzip stream (it ends before the gzip trailer)", field=field)
    if inflater.unused_data:
        raise InitdataError(
            "annotation: {0} bytes follow the first gzip member; the Go and Rust runtimes would "
            "read different documents, so exactly one member is accepted".format(len(inflater.unused_data)),
            field=field)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InitdataError("annotation: the inflated initdata is not UTF-8 ({0})".format(exc.reason), field=field)


# --------------------------------------------------------------------------------------------
# validate and render


def _policy_switch(policy, request):
    match = re.search(r"^\s*default\s+" + request + r"\s*:=\s*(true|false)\b", policy, re.MULTILINE)
    return None if match is None else match.group(1) == "true"


def validate(toml_text: str, allow_insecure_http: bool = False, allow_crlf: bool = False) -> dict:
    """Check initdata text the way the guest and Trustee will read it; return what it says.

    Returns ``{version, algorithm, data_keys, kbs_url, kbs_urls, kbs_cert, policy, warnings}``.
    Raises :class:`InitdataError` on anything the guest would refuse or that defeats attestation.
    """
    raw = _utf8(toml_text, "initdata")
    if len(raw) > MAX_TOML_BYTES:
        raise InitdataError("initdata: {0} bytes is larger than the {1} bytes accepted".format(
            len(raw), MAX_TOML_BYTES), field="initdata")
    if "\r" in toml_text and not allow_crlf:
        raise InitdataError(
            "initdata: has CR/CRLF line endings; the digest covers the exact bytes, so a copy with LF "
            "endings would not match: convert to LF (or pass allow_crlf to keep them)", field="initdata")
    doc = _parse_toml(toml_text, "initdata")
    unknown = sorted(set(doc) - {"version", "algorithm", "data"})
    if unknown:
        raise InitdataError("initdata: unknown top-level key(s) {0}; valid keys: version, algorithm, data".format(
            ", ".join(unknown)), field=unknown[0])
    if doc.get("version") != VERSION:
        what = "is missing" if doc.get("version") is None else "{0!r} is not supported".format(doc.get("version"))
        raise InitdataError("version: {0}; the only valid value is \"{1}\"".format(what, VERSION), field="version")
    algorithm = _algorithm(doc)
    data = doc.get("data")
    if not isinstance(data, dict):
        raise InitdataError("data: a [data] table of strings is required (keys aa.toml, cdh.toml, policy.rego)",
                            field="data")
    for key, value in data.items():
        if not isinstance(value, str):
            raise InitdataError("data.{0}: must be a string, got {1}".format(_toml_basic(key), type(value).__name__),
                                field="data." + key)
    warnings = []
    urls = {}
    kbs_cert = False
    cdh_cert = False
    if "aa.toml" in data:
        aa = _parse_toml(data["aa.toml"], 'data."aa.toml"')
        token_configs = aa.get("token_configs", {})
        if not isinstance(token_configs, dict):
            raise InitdataError('data."aa.toml": token_configs must be a table', field='data."aa.toml"')
        for name in ("kbs", "coco_as"):
            section = token_configs.get(name)
            if isinstance(section, dict) and "url" in section:
                urls["aa." + name] = section["url"]
        kbs = token_configs.get("kbs")
        if not isinstance(kbs, dict) or "url" not in kbs:
            warnings.append('data."aa.toml": no [token_configs.kbs] url, so the pod cannot ask for a KBS token')
            kbs = {}
        if "cert" in kbs:
            kbs_cert = True
            _pem(kbs["cert"], 'data."aa.toml".token_configs.kbs.cert')
        if "kbs_cert" in kbs:
            raise InitdataError('data."aa.toml": token_configs.kbs uses the key "cert", not "kbs_cert"',
                                field='data."aa.toml".token_configs.kbs')
    else:
        warnings.append('data has no "aa.toml": the attestation agent will not know the KBS')
    if "cdh.toml" in data:
        cdh = _parse_toml(data["cdh.toml"], 'data."cdh.toml"')
        kbc = cdh.get("kbc")
        if not isinstance(kbc, dict):
            raise InitdataError('data."cdh.toml": a [kbc] table is required', field='data."cdh.toml"')
        if kbc.get("name") != "cc_kbc":
            warnings.append('data."cdh.toml": kbc.name is {0!r}; confidential containers with Trustee use '
                            '"cc_kbc"'.format(kbc.get("name")))
        if "url" in kbc:
            urls["cdh.kbc"] = kbc["url"]
        if "cert" in kbc:
            raise InitdataError('data."cdh.toml": [kbc] uses the key "kbs_cert", not "cert"',
                                field='data."cdh.toml".kbc')
        if "kbs_cert" in kbc:
            cdh_cert = True
            _pem(kbc["kbs_cert"], 'data."cdh.toml".kbc.kbs_cert')
    else:
        warnings.append('data has no "cdh.toml": the pod cannot fetch KBS resources')
    schemes = {}
    for where, url in urls.items():
        schemes[where] = _check_url(url, where + ".url", allow_insecure_http)
    if len(set(urls.values())) > 1:
        warnings.append("the KBS URLs differ: {0}".format(", ".join("{0}={1}".format(k, v) for k, v in sorted(urls.items()))))
    if "https" in schemes.values() and not kbs_cert:
        warnings.append('aa.toml has no KBS cert: the guest must trust the Trustee route certificate '
                        'through its default CAs')
    if "http" in schemes.values() and (kbs_cert or cdh_cert):
        warnings.append("plain-http KBS with a certificate configured: remove kbs_cert/cert (Trustee insecure_http)")
    policy = {"exec_allowed": None, "log_read_allowed": None, "package": None}
    if "policy.rego" in data:
        text = data["policy.rego"]
        package = re.search(r"^\s*package\s+(\S+)", text, re.MULTILINE)
        policy["package"] = package.group(1) if package else None
        if policy["package"] != "agent_policy":
            raise InitdataError('data."policy.rego": must start with "package agent_policy"', field='data."policy.rego"')
        policy["exec_allowed"] = _policy_switch(text, "ExecProcessRequest")
        policy["log_read_allowed"] = _policy_switch(text, "ReadStreamRequest")
        if policy["exec_allowed"] is not False or policy["log_read_allowed"] is not False:
            warnings.append("the agent policy lets the host exec into containers or read their output")
    else:
        warnings.append('data has no "policy.rego": the guest image default (allow-all) policy applies')
    return {
        "version": doc["version"],
        "algorithm": algorithm,
        "data_keys": sorted(data),
        "kbs_url": urls.get("aa.kbs") or urls.get("cdh.kbc"),
        "kbs_urls": urls,
        "kbs_cert": kbs_cert,
        "policy": policy,
        "warnings": warnings,
    }


def _image_section(image):
    if not image:
        return ""
    if not isinstance(image, dict):
        raise InitdataError("image: expected a mapping of CDH image options", field="image")
    unknown = sorted(set(image) - set(IMAGE_OPTIONS))
    if unknown:
        raise InitdataError("image: unknown option(s) {0}; valid options: {1}".format(
            ", ".join(unknown), ", ".join(IMAGE_OPTIONS)), field="image." + unknown[0])
    lines = ["", "[image]"]
    proxy = None
    for key in IMAGE_OPTIONS:
        if key not in image or image[key] is None:
            continue
        value = image[key]
        if key == "image_pull_proxy":
            proxy = value
        elif key == "max_concurrent_layer_downloads_per_image":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InitdataError("image.{0}: expected a positive integer".format(key), field="image." + key)
            lines.append("{0} = {1}".format(key, value))
        elif key == "extra_root_certificates":
            if not isinstance(value, list):
                raise InitdataError("image.{0}: expected a list of PEM certificates".format(key), field="image." + key)
            certs = [_toml_basic(_pem(c, "image.{0}[{1}]".format(key, i))) for i, c in enumerate(value)]
            lines.append("{0} = [{1}]".format(key, ", ".join(certs)))
        else:
            if not isinstance(value, str):
                raise InitdataError("image.{0}: expected a string".format(key), field="image." + key)
            lines.append("{0} = {1}".format(key, _toml_basic(value)))
    if proxy:
        if not isinstance(proxy, dict):
            raise InitdataError("image.image_pull_proxy: expected a mapping with {0}".format(
                ", ".join(PROXY_OPTIONS)), field="image.image_pull_proxy")
        unknown = sorted(set(proxy) - set(PROXY_OPTIONS))
        if unknown:
            raise InitdataError("image.image_pull_proxy: unknown option(s) {0}; valid options: {1}".format(
                ", ".join(unknown), ", ".join(PROXY_OPTIONS)), field="image.image_pull_proxy")
        lines.extend(["", "[image.image_pull_proxy]"])
        for key in PROXY_OPTIONS:
            if proxy.get(key) is not None:
                if not isinstance(proxy[key], str):
                    raise InitdataError("image.image_pull_proxy.{0}: expected a string".format(key),
                                        field="image.image_pull_proxy." + key)
                lines.append("{0} = {1}".format(key, _toml_basic(proxy[key])))
    return "\n".join(lines) + "\n"


def render(kbs_url: str, kbs_cert: str | None = None, policy: str = "restrictive", policy_text: str | None = None,
           algorithm: str = "sha384", image: dict | None = None, allow_insecure_http: bool = False) -> str:
    """initdata TOML for a pod that attests to the Trustee KBS at ``kbs_url``.

    ``policy`` is a preset name (``restrictive``, ``allow-all``) or ``custom`` with
    ``policy_text``. ``algorithm`` defaults to sha384: an exact fit for the TDX MRCONFIGID and the
    value veritas computes; SNP keeps the first 32 bytes.
    """
    if algorithm not in ALGORITHMS:
        raise InitdataError("algorithm: {0!r} is not supported; valid values: {1}".format(
            algorithm, ", ".join(sorted(ALGORITHMS))), field="algorithm")
    scheme = _check_url(kbs_url, "kbs_url", allow_insecure_http)
    cert = _pem(kbs_cert, "kbs_cert")
    if scheme == "http" and cert:
        raise InitdataError("kbs_cert: a plain-http KBS takes no certificate; drop kbs_cert or use https",
                            field="kbs_cert")
    if policy == "custom":
        if not isinstance(policy_text, str) or not policy_text.strip():
            raise InitdataError("policy_text: required when policy is 'custom'", field="policy_text")
        rego = policy_text if policy_text.endswith("\n") else policy_text + "\n"
    else:
        if policy_text is not None:
            raise InitdataError("policy_text: only used with policy 'custom'", field="policy_text")
        rego = policy_preset(policy)

    url = _toml_basic(kbs_url)
    aa = ["[token_configs]", "[token_configs.coco_as]", "url = " + url, "", "[token_configs.kbs]", "url = " + url]
    if cert:
        aa.append('cert = """\n' + cert + '"""')
    cdh = ["socket = " + _toml_basic(CDH_SOCKET), "credentials = []", "", "[kbc]", 'name = "cc_kbc"', "url = " + url]
    if cert:
        cdh.append('kbs_cert = """\n' + cert + '"""')
    aa_text = "\n".join(aa) + "\n"
    cdh_text = "\n".join(cdh) + "\n" + _image_section(image)
    data = {"aa.toml": aa_text, "cdh.toml": cdh_text, "policy.rego": rego}
    text = "".join([
        "algorithm = " + _toml_basic(algorithm) + "\n",
        "version = " + _toml_basic(VERSION) + "\n",
        "\n[data]\n",
        "\n\n".join("{0} = {1}".format(_toml_basic(k), _toml_multiline(v)) for k, v in data.items()),
        "\n",
    ])
    # Our own output must read back as exactly what we meant before anyone hashes it.
    parsed = _parse_toml(text, "rendered initdata")
    if parsed.get("data") != data:
        raise InitdataError("internal error: rendered initdata does not read back as its data", field="initdata")
    validate(text, allow_insecure_http=allow_insecure_http)
    return text


def bindings(toml_text: str) -> dict:
    """Digest and TEE values of initdata, in the forms reports and QEMU use.

    ``{algorithm, digest, tdx_mrconfigid, snp_hostdata}`` as lower-case hex, plus
    ``tdx_mrconfigid_b64``/``snp_hostdata_b64`` (what QEMU's mrconfigid=/host-data= take).
    """
    raw = digest(toml_text)
    doc = _parse_toml(toml_text, "initdata")
    tdx = tee_binding(raw, "tdx")
    snp = tee_binding(raw, "snp")
    return {
        "algorithm": doc["algorithm"],
        "digest": raw.hex(),
        "tdx_mrconfigid": tdx.hex(),
        "snp_hostdata": snp.hex(),
        "tdx_mrconfigid_b64": base64.b64encode(tdx).decode("ascii"),
        "snp_hostdata_b64": base64.b64encode(snp).decode("ascii"),
    }
