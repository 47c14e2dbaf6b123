# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Trustee decisions as plain functions: the KBS configuration's verifier settings, egress, readiness.

PRIVATE to this collection. Facts (shared/reference/operators.md §7, attestation.md §6, anchors T8-T9):

* The operator generates ``<name>-kbs-config`` (key ``kbs-config.toml``) once and keeps manual
  edits, so the collection edits that text in place: only the NVIDIA verifier table is rewritten,
  every other line stays as the operator or the user left it.
* Without ``[attestation_service.verifier_config.nvidia_verifier]`` Trustee uses the Local verifier,
  whose claims the default GPU policy cannot affirm (and which fails on Blackwell); ``type =
  "Remote"`` sends GPU evidence to NRAS.
* Trustee needs egress to NRAS (Remote NVIDIA verifier, and its JWKS), Intel PCS (TDX collateral)
  and AMD KDS (SNP VCEKs, when ``KDS`` is a VCEK source).
* Readiness: TrusteeConfig ``status.isReady``, Deployment ``trustee-deployment`` rolled out and
  Available (with operator 1.2: onto the current version of every ConfigMap it mounts), Service
  ``kbs-service``, Route admitted.
"""

from __future__ import annotations

import re

try:
    import tomllib
except ImportError:  # Python < 3.11: fall back to tomli when present; edits are then checked less
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ImportError:
        tomllib = None

NRAS_URL = "https://nras.attestation.nvidia.com/v4/attest"
NRAS_JWKS_URL = "https://nras.attestation.nvidia.com/.well-known/jwks.json"
INTEL_PCS_URL = "https://api.trustedservices.intel.com/sgx/certification/v4/"
AMD_KDS_URL = "https://kdsintf.amd.com"
NVIDIA_TABLE = "attestation_service.verifier_config.nvidia_verifier"
DEPLOYMENT = "trustee-deployment"
SERVICE = "kbs-service"
# The pod-template annotation with which operator 1.2 rolls the KBS on every change of a ConfigMap it mounts:
# "<name>:<resourceVersion>" joined by "," (openshift/trustee-operator kbsconfig_controller.go
# getConfigMapVersionAnnotations). Operators before 1.2 do not write it and never roll the KBS.
CONFIGMAP_VERSIONS = "kbs.confidentialcontainers.org/configmap-versions"
# The KbsConfig fields naming the ConfigMaps in that annotation, in the operator's order.
VERSIONED_CONFIGMAP_FIELDS = ("kbsConfigMapName", "kbsRvpsRefValuesConfigMapName", "kbsAttestationPolicyConfigMapName",
                              "kbsGpuAttestationPolicyConfigMapName", "kbsResourcePolicyConfigMapName")
# The operator's copies of the TLS secrets the TrusteeConfig names: (spec field, copy, key in the copy, key in the
# source). Created once and then preserved (trusteeconfig_controller.go createOrUpdateHttpsKeySecret and friends).
SPLIT_SECRETS = (
    ("httpsSpec", "{0}-https-key-secret", "privateKey", "tls.key"),
    ("httpsSpec", "{0}-https-cert-secret", "certificate", "tls.crt"),
    ("attestationTokenVerificationSpec", "{0}-attestation-key-secret", "token.key", "tls.key"),
    ("attestationTokenVerificationSpec", "{0}-attestation-cert-secret", "token.crt", "tls.crt"),
)

_RESOLVE = re.compile(r"^([^:\s]+):(\d+):(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):(\d+)$")
_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


class TrusteeConfigError(ValueError):
    """kbs-config.toml that cannot be read or edited safely; the message says where."""


def parse(text):
    if tomllib is None:
        return None
    try:
        return tomllib.loads(text)
    except Exception as exc:  # tomllib.TOMLDecodeError; tomli's has another class
        raise TrusteeConfigError("kbs-config.toml is not valid TOML: {0}".format(exc))


def _toml_string(value):
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_nvidia_verifier(text, mode, url=None):
    """``text`` with the NVIDIA verifier table set to ``mode`` (remote or local); other lines untouched.

    The table's own lines are replaced; a table absent is appended at the end. Raises
    TrusteeConfigError when the text is not TOML, or when the result would not parse.
    """
    if mode not in ("remote", "local"):
        raise TrusteeConfigError("nvidia_verifier: {0!r} is not valid; valid values: remote, local".format(mode))
    parse(text)
    body = ['type = "Remote"', "verifier_url = " + _toml_string(url or NRAS_URL)] if mode == "remote" \
        else ['type = "Local"']
    lines = text.split("\n")
    out, in_table, found, written = [], False, False, False
    for line in lines:
        match = _TABLE.match(line)
        if match:
            if in_table and not written:
                _insert_before_blank_tail(out, body)
                written = True
            in_table = match.group(1) == NVIDIA_TABLE and not line.strip().startswith("[[")
            found = found or in_table
            out.append(line)
            continue
        if in_table:
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                out.append(line)  # the table's comments and blank lines stay where they are
            elif not written:
                out.extend(body)  # the first old key/value line is where the new ones go
                written = True
            continue
        out.append(line)
    if in_table and not written:
        _insert_before_blank_tail(out, body)
    if not found:
        while out and not out[-1].strip():
            out.pop()
        out += ["", "[" + NVIDIA_TABLE + "]"] + body + [""]
    result = "\n".join(out)
    doc = parse(result)
    if doc is not None:
        verifier = ((doc.get("attestation_service") or {}).get("verifier_config") or {}).get("nvidia_verifier") or {}
        if str(verifier.get("type", "")).lower() != mode:
            raise TrusteeConfigError("internal error: the edited kbs-config.toml does not read back with the "
                                     "NVIDIA verifier set to {0}".format(mode))
    return result


def _insert_before_blank_tail(out, body):
    tail = []
    while out and not out[-1].strip():
        tail.insert(0, out.pop())
    out.extend(body)
    out.extend(tail)


def summary(text):
    """What matters in a kbs-config.toml: transport, token signing, verifiers, and the egress they need."""
    doc = parse(text)
    if doc is None:
        return {"parsed": False, "egress": []}
    server = doc.get("http_server") or {}
    service = doc.get("attestation_service") or {}
    verifiers = service.get("verifier_config") or {}
    nvidia = verifiers.get("nvidia_verifier") or {}
    nvidia_type = str(nvidia.get("type") or "Local")
    snp_sources = [str((s or {}).get("type")) for s in (verifiers.get("snp_verifier") or {}).get("vcek_sources") or []]
    signer = (service.get("attestation_token_broker") or {}).get("signer") or {}
    # The operator names Intel's collateral service in [attestation_service.verifier_config.dcap_verifier]
    # (openshift/trustee-operator config/templates/kbs-config-restricted.toml).
    pcs = (verifiers.get("dcap_verifier") or {}).get("collateral_service") or INTEL_PCS_URL
    egress = []
    if nvidia_type.lower() == "remote":
        egress.append({"service": "NVIDIA NRAS", "url": nvidia.get("verifier_url") or NRAS_URL,
                       "why": "GPU evidence is verified remotely (nvidia_verifier type Remote)"})
        egress.append({"service": "NVIDIA NRAS JWKS", "url": NRAS_JWKS_URL,
                       "why": "the KBS downloads the keys that sign NRAS answers (not configurable)"})
    egress.append({"service": "Intel PCS", "url": pcs, "why": "TDX quote collateral (TCB info, CRLs)"})
    if not snp_sources or "KDS" in snp_sources:
        egress.append({"service": "AMD KDS", "url": AMD_KDS_URL,
                       "why": "SNP VCEK certificates ({0})".format(
                           "vcek_sources: " + ", ".join(snp_sources) if snp_sources else "default source KDS")})
    return {
        "parsed": True,
        "https": not server.get("insecure_http", False),
        "tls_profile": server.get("tls_profile"),
        "token_signer": bool(signer.get("key_path")),
        "admin_authorization_mode": (doc.get("admin") or {}).get("authorization_mode"),
        "nvidia_verifier": nvidia_type,
        "nras_url": nvidia.get("verifier_url") if nvidia_type.lower() == "remote" else None,
        "snp_vcek_sources": snp_sources,
        "egress": egress,
    }


def route_state(route):
    """(admitted, host, termination, message) of a Route."""
    if not route:
        return False, None, None, "route does not exist"
    spec = route.get("spec") or {}
    termination = (spec.get("tls") or {}).get("termination")
    for ingress in (route.get("status") or {}).get("ingress") or []:
        for condition in ingress.get("conditions") or []:
            if condition.get("type") == "Admitted":
                if condition.get("status") == "True":
                    return True, ingress.get("host") or spec.get("host"), termination, "admitted"
                return False, spec.get("host"), termination, "not admitted: {0} {1}".format(
                    condition.get("reason", ""), condition.get("message", "")).strip()
    return False, spec.get("host"), termination, "not admitted yet"


def deployment_state(deployment):
    """(rolled out and available, message)."""
    if not deployment:
        return False, "deployment {0} does not exist yet".format(DEPLOYMENT)
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, "deployment {0}: generation {1} not observed yet".format(DEPLOYMENT, meta.get("generation"))
    updated, available, total = (status.get("updatedReplicas", 0), status.get("availableReplicas", 0),
                                 status.get("replicas", 0))
    if updated < want or available < want or total > updated:
        return False, "deployment {0}: {1} updated, {2} available, {3} total of {4}".format(
            DEPLOYMENT, updated, available, total, want)
    if not any(c.get("type") == "Available" and c.get("status") == "True" for c in status.get("conditions") or []):
        return False, "deployment {0} is not Available".format(DEPLOYMENT)
    return True, "deployment {0} rolled out ({1} available)".format(DEPLOYMENT, available)


def configmap_versions_state(deployment, kbsconfig_spec, configmaps):
    """(the KBS pod template names the current version of every ConfigMap it mounts, message).

    ``configmaps`` maps name to the ConfigMap (or None). A template without the annotation (operator
    before 1.2, which never rolls the KBS itself) passes: the caller restarts the KBS another way.
    """
    annotations = ((((deployment or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "annotations") or {}
    if CONFIGMAP_VERSIONS not in annotations:
        return True, "the operator does not track ConfigMap versions in the KBS pods"
    have = {entry for entry in annotations[CONFIGMAP_VERSIONS].split(",") if entry}
    want = set()
    for field in VERSIONED_CONFIGMAP_FIELDS:
        name = (kbsconfig_spec or {}).get(field)
        configmap = configmaps.get(name) if name else None
        if configmap:
            want.add("{0}:{1}".format(name, configmap["metadata"]["resourceVersion"]))
    if have != want:
        behind = sorted(entry.split(":", 1)[0] for entry in want - have)
        return False, "the KBS pods are not rolled onto the current {0} yet".format(", ".join(behind) or "ConfigMaps")
    return True, "the KBS pods mount the current ConfigMaps"


# From operator 1.2 the KbsConfig reconciler first moves what a 1.1 operator left over, each ConfigMap once,
# and marks it (openshift/trustee-operator internal/controller/migration.go, absent from v1.1.0): the KBS
# configuration and the policies are deleted and made again from the 1.2 templates, the reference values
# rewritten from the reference-values.json list to reference_value. Until each carries the mark, an edit may
# land on a ConfigMap about to be replaced.
MIGRATION_ANNOTATION = "kbs.confidentialcontainers.org/migrated-from-v1.1.0"
MIGRATES_SINCE = (1, 2)


def operator_version(csvs):
    """The version of the Succeeded trustee-operator CSV among ``csvs`` (spec.version), or None."""
    for csv in csvs or []:
        if csv["metadata"]["name"].startswith("trustee-operator.") and \
                ((csv.get("status") or {}).get("phase")) == "Succeeded":
            return (csv.get("spec") or {}).get("version") or csv["metadata"]["name"].split(".v", 1)[-1]
    return None


def migrates(version):
    """Whether an operator of this version migrates (1.2 or later); not when the version does not parse."""
    match = re.match(r"^v?(\d+)\.(\d+)", str(version or ""))
    return bool(match) and (int(match.group(1)), int(match.group(2))) >= MIGRATES_SINCE


def migration_state(version, kbsconfig_spec, configmaps):
    """(the operator has migrated every ConfigMap the KbsConfig names, message); ``configmaps`` maps name to the
    ConfigMap or None."""
    if not migrates(version):
        return True, "operator {0} migrates no ConfigMaps".format(version or "(version unknown)")
    for field in VERSIONED_CONFIGMAP_FIELDS:
        name = (kbsconfig_spec or {}).get(field)
        if not name:
            continue
        configmap = configmaps.get(name)
        if configmap is None:
            return False, "ConfigMap {0} is gone, for the operator to make it again in the 1.2 format".format(name)
        if MIGRATION_ANNOTATION not in (configmap["metadata"].get("annotations") or {}):
            return False, "ConfigMap {0} is not migrated from the 1.1 format yet".format(name)
    return True, "operator {0} has migrated its ConfigMaps".format(version)


def trusteeconfig_state(trusteeconfig):
    if not trusteeconfig:
        return False, "TrusteeConfig does not exist"
    status = trusteeconfig.get("status") or {}
    if status.get("isReady") is True:
        return True, status.get("statusDescription") or "ready"
    return False, "TrusteeConfig not ready: {0}".format(status.get("statusDescription") or "no status yet")


def parse_resolve(entries):
    """``host:port:address:port`` strings (curl --resolve) to {(host, port): (address, port)}."""
    mapping = {}
    for entry in entries or []:
        match = _RESOLVE.match(str(entry))
        if not match:
            raise ValueError("resolve entry {0!r} is not host:port:address:port".format(entry))
        host, port, address, target = match.groups()
        mapping[(host.lower(), int(port))] = (address.strip("[]"), int(target))
    return mapping
