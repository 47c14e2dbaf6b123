"""The KBS configuration the Trustee operator twin generates, and where the pod's files live.

``render`` writes ``kbs-config.toml`` for a profile (operators.md §7.1): Restricted serves HTTPS
with the key and certificate mounted from the split ``httpsSpec`` secret and signs tokens with the
mounted attestation key; Permissive serves plain HTTP and accepts the JWK in token headers. Both
deny the admin API, list the SNP VCEK sources (offline store, then AMD KDS), and (from 1.2) set the
NVIDIA verifier to Remote (NRAS); Restricted also names Intel's PCS for TDX collateral.

The paths are those of the pod's volumes (``MOUNTS``); the twin KBS process reads every path
relative to the pod's root directory, so the same file works in a real pod and in the twin.
"""

import tomllib

NRAS_URL = "https://nras.attestation.nvidia.com/v4/attest"
INTEL_PCS_URL = "https://api.trustedservices.intel.com/sgx/certification/v4/"
AMD_KDS_URL = "https://kdsintf.amd.com"

HTTPS_KEY = "/etc/https-key/privateKey"
HTTPS_CERT = "/etc/https-cert/certificate"
TOKEN_KEY = "/etc/attestation-key/token.key"
TOKEN_CERT = "/etc/attestation-cert/token.crt"
POLICY_DIR = "/opt/confidential-containers/attestation-service/policies"
RESOURCE_POLICY = "/opt/confidential-containers/opa/policy.rego"
REPOSITORY = "/opt/confidential-containers/kbs/repository"
KBS_CONFIG = "/etc/kbs-config/kbs-config.toml"
AUTH_PUBLIC_KEY = "/etc/auth-secret/publicKey"

# Where each trustee version keeps reference values and the resource policy (ConfigMap key, and
# the file the KBS reads). v1.2 renamed both keys (upgrade notes of the Red Hat build). The twin's
# assumption: 1.1 templates lack the NVIDIA verifier table (Local by default, as the upstream
# templates of that time), the GPU-ready 1.2 sets it to Remote (RH-GPU article).
LAYOUTS = {
    "1.1": {"rvps_key": "reference-values.json", "rvps_empty": "[]",
            "rvps_path": "/opt/confidential-containers/rvps/reference-values/reference-values.json",
            "resource_policy_key": "policy.rego", "nvidia_remote": False},
    "1.2": {"rvps_key": "reference_value", "rvps_empty": "{}",
            "rvps_path": "/opt/confidential-containers/storage/local_json/reference_value",
            "resource_policy_key": "resource-policy.rego", "nvidia_remote": True},
}
DEFAULT_LAYOUT = "1.2"

TLS_PROFILES = ("old", "intermediate", "modern", "custom")


def layout_for(version):
    """The layout of an operator version such as '1.1.0' or 'v1.2.1' (newest when unknown)."""
    if version:
        parts = str(version).lstrip("v").split(".")
        try:
            if (int(parts[0]), int(parts[1])) < (1, 2):
                return LAYOUTS["1.1"]
        except (ValueError, IndexError):
            pass
    return LAYOUTS[DEFAULT_LAYOUT]


def tls_lines(tls):
    """The [http_server] TLS lines for a TrusteeConfig ``tlsConfig`` (intermediate by default)."""
    tls = tls or {}
    profile = tls.get("profile") or "intermediate"
    lines = [f'tls_profile = "{profile}"']
    if profile == "custom":
        for key, field in (("tls_min_version", "minVersion"), ("tls_max_version", "maxVersion")):
            if tls.get(field):
                lines.append(f'{key} = "{tls[field]}"')
        for key, field in (("tls_ciphers", "ciphers"), ("tls_groups", "groups")):
            if tls.get(field):
                lines.append(f'{key} = "{":".join(tls[field])}"')
    return lines


def render(profile, layout, tls=None):
    restricted = profile == "Restricted"
    out = ["[http_server]", 'sockets = ["0.0.0.0:8080"]']
    if restricted:
        out += ["insecure_http = false", f'private_key = "{HTTPS_KEY}"', f'certificate = "{HTTPS_CERT}"']
        out += tls_lines(tls)
    else:
        out += ["insecure_http = true"]
    out += ["", "[admin]", 'authorization_mode = "DenyAll"', "",
            "[attestation_token]", f"insecure_header_jwk = {'false' if restricted else 'true'}"]
    if restricted:
        out += [f'trusted_certs_paths = ["{TOKEN_CERT}"]']
    out += ["", "[attestation_service]", 'type = "coco_as_builtin"', f'policy_dir = "{POLICY_DIR}"', "",
            "[attestation_service.attestation_token_broker]", "duration_min = 5"]
    if restricted:
        out += ["", "[attestation_service.attestation_token_broker.signer]",
                f'key_path = "{TOKEN_KEY}"', f'cert_path = "{TOKEN_CERT}"']
    out += ["", "[attestation_service.rvps_config]", 'type = "BuiltIn"', "",
            "[attestation_service.rvps_config.storage]", 'type = "LocalJson"', f'file_path = "{layout["rvps_path"]}"',
            "", "[attestation_service.verifier_config.snp_verifier]",
            'vcek_sources = [{ type = "OfflineStore" }, { type = "KDS" }]']
    if restricted:
        out += ["", "[attestation_service.verifier_config.tdx_verifier]", f'collateral_service = "{INTEL_PCS_URL}"']
    if layout.get("nvidia_remote"):
        out += ["", "[attestation_service.verifier_config.nvidia_verifier]", 'type = "Remote"',
                f'verifier_url = "{NRAS_URL}"']
    out += ["", "[policy_engine]", f'policy_path = "{RESOURCE_POLICY}"', "",
            "[[plugins]]", 'name = "resource"', 'type = "LocalFs"', f'dir_path = "{REPOSITORY}"', ""]
    return "\n".join(out)


def merge_tls(text, tls):
    """``text`` with its [http_server] TLS lines set from ``tls``; every other line kept as the user left it.

    The operator keeps manual edits of kbs-config.toml and only merges the TLS settings in.
    Returns the text unchanged when it has no [http_server] table or serves plain HTTP.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return text  # a broken file is the user's to fix; the KBS will say why it cannot start
    server = doc.get("http_server") or {}
    if server.get("insecure_http", False) or "http_server" not in doc:
        return text
    wanted = tls_lines(tls)
    all_tls_keys = {"tls_profile", "tls_min_version", "tls_max_version", "tls_ciphers", "tls_groups"}
    lines = text.split("\n")
    out, in_server, inserted = [], False, False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            if in_server and not inserted:
                while out and not out[-1].strip():
                    out.pop()
                out.extend(wanted)
                out.append("")
                inserted = True
            in_server = stripped == "[http_server]"
            out.append(line)
            continue
        if in_server and stripped.split("=", 1)[0].strip() in all_tls_keys:
            if not inserted:
                out.extend(wanted)
                inserted = True
            continue  # replaced by the wanted lines (or dropped when no longer wanted)
        out.append(line)
    if in_server and not inserted:
        out.extend(wanted)
    return "\n".join(out)


def parse(text):
    return tomllib.loads(text)
