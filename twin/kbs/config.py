"""What the Trustee operator twin writes into the KBS pod, and where the pod's files live.

The real operator (``openshift/trustee-operator`` 2c1a593, ``internal/controller/``) renders
``kbs-config.toml`` from a Go template per profile (``generateKbsTomlConfig`` in
``trusteeconfig_controller.go``, data ``KbsConfigTemplateData`` in ``tlsconfig.go``) and copies its
policy and reference-value files verbatim into ConfigMaps. The twin does the same from one of two
sources (``Sources``):

* the upstream files in ``../shared/trustee/operator-templates`` when the twin runs in conformance
  mode (``upstream_dir``), rendered with ``render_go_template``, a renderer for exactly the
  ``text/template`` constructs those templates use (``{{if .F}}``, ``{{if eq .F "x"}}``,
  ``{{else}}``, ``{{end}}``, ``{{.F}}``);
* otherwise the twin's own files: ``render_own`` builds the same TOML document from the facts
  (a test proves both parse to the same document for every profile and TLS setting), and the
  policies in ``twin/kbs/policies``.

The mount paths are those of ``newKbsDeployment`` (``kbsconfig_controller.go``) with the constants
of ``common.go``; the twin KBS process reads every path relative to its pod's root directory, and
resolves where KBS keeps things as upstream KBS does from the config's storage backends
(``repository_dir``, ``resource_policy_path``, ``attestation_policy_path``, ``reference_values_path``).
"""

import json
import re
import tomllib
from pathlib import Path

NRAS_URL = "https://nras.attestation.nvidia.com/v4/attest"
INTEL_PCS_URL = "https://api.trustedservices.intel.com/sgx/certification/v4/"
AMD_KDS_URL = "https://kdsintf.amd.com"

# -- mount paths (trustee-operator common.go constants, kbsconfig_controller.go newKbsDeployment) --
KBS_CONFIG_DIR = "/etc/kbs-config"  # filepath.Join(kbsDefaultConfigPath, "kbs-config")
KBS_CONFIG = f"{KBS_CONFIG_DIR}/kbs-config.toml"  # buildKbsContainer: --config-file
AUTH_SECRET_DIR = "/etc/auth-secret"
AUTH_PUBLIC_KEY = f"{AUTH_SECRET_DIR}/publicKey"
HTTPS_KEY_DIR, HTTPS_CERT_DIR = "/etc/https-key", "/etc/https-cert"
HTTPS_KEY, HTTPS_CERT = f"{HTTPS_KEY_DIR}/privateKey", f"{HTTPS_CERT_DIR}/certificate"
TOKEN_KEY_DIR, TOKEN_CERT_DIR = "/etc/attestation-key", "/etc/attestation-cert"
TOKEN_KEY, TOKEN_CERT = f"{TOKEN_KEY_DIR}/token.key", f"{TOKEN_CERT_DIR}/token.crt"
STORAGE = "/opt/confidential-containers/storage"  # baseStoragePath (emptyDir base-storage-dir)
AS_POLICY_DIR = f"{STORAGE}/attestation_service_policy"  # attestationPolicyPath (emptyDir)
CPU_POLICY = f"{AS_POLICY_DIR}/default_cpu.rego"  # subPath default_cpu.rego
GPU_POLICY = f"{AS_POLICY_DIR}/default_gpu.rego"  # subPath default_gpu.rego
KBS_STORAGE_DIR = f"{STORAGE}/kbs"  # kbsStoragePath (emptyDir resource-policy-dir)
RESOURCE_POLICY = f"{KBS_STORAGE_DIR}/resource-policy.rego"  # subPath resource-policy.rego
REPOSITORY = f"{STORAGE}/repository"  # RepositoryPath (emptyDir repository-dir)
RVPS_DIR = f"{STORAGE}/local_json"  # rvpsReferenceValuesPath (emptyDir rvps-dir)
REFERENCE_VALUES = f"{RVPS_DIR}/reference_value"  # subPath reference_value
SECRETS_STAGING = "/tmp/kbs-secrets"  # KbsSecretsMountPath: the secret-converter init container reads here
CERT_CACHE_DIR = "/opt/confidential-containers/attestation-service/kds-store/vcek"  # kbsDefaultLocalCacheDir

# ConfigMap keys the operator writes (trusteeconfig_controller.go generate*ConfigMap).
KBS_CONFIG_KEY = "kbs-config.toml"
CPU_POLICY_KEY = "default_cpu.rego"
GPU_POLICY_KEY = "default_gpu.rego"
RESOURCE_POLICY_KEY = "resource-policy.rego"  # resourcePolicyFilename
REFERENCE_VALUES_KEY = "reference_value"

# Upstream file names in config/templates (= ../shared/trustee/operator-templates), and the twin's own.
UPSTREAM_FILES = {
    "kbs-config-Restricted": "kbs-config-restricted.toml",
    "kbs-config-Permissive": "kbs-config-permissive.toml",
    "cpu": "ear_default_attestation_policy_cpu.rego",
    "gpu": "ear_default_attestation_policy_gpu.rego",
    "resource-Restricted": "resource-policy-restrictive.rego",
    "resource-Permissive": "resource-policy-permissive.rego",
    "reference-values": "rvps-reference-values.json",
}
OWN_POLICIES = Path(__file__).resolve().parent / "policies"
OWN_FILES = {
    "cpu": "default_cpu.rego",
    "gpu": "default_gpu.rego",
    "resource-Restricted": "resource-policy-restrictive.rego",
    "resource-Permissive": "resource-policy-permissive.rego",
}
OWN_EMPTY_REFERENCE_VALUES = "{}\n"

# Where each operator version keeps reference values and the resource policy (ConfigMap keys).
# v1.2 renamed both keys (trustee-operator migration.go: reference-values.json -> reference_value,
# policy.rego -> resource-policy.rego). The twin's assumption for 1.1: its template lacks the NVIDIA
# verifier table (Local by default, as upstream templates of that time). The KBS reads the 1.2 paths
# in both cases (the 1.1 keys are mounted there).
LAYOUTS = {
    # 1.1 (trustee v0.14-v0.18 inside): the RVPS reads a list file named by the old
    # [attestation_service.rvps_config.storage] table, and the operator has no configmap-versions
    # rollouts (they arrived in trustee-operator v1.2.0; v1.1.0's updateKbsDeployment rewrites only
    # the template's spec), so a KBS there restarts only when someone restarts it. ``migrates``: from
    # v1.2.0 the KbsConfig reconciler first moves what a 1.1 operator left over (migration.go, absent in
    # v1.1.0) and the generated ConfigMaps carry its annotation.
    "1.1": {"rvps_key": "reference-values.json", "rvps_empty": "[]", "resource_policy_key": "policy.rego",
            "nvidia_remote": False, "rvps_list_file": "/opt/confidential-containers/rvps/reference-values.json",
            "rollouts": False, "migrates": False},
    "1.2": {"rvps_key": REFERENCE_VALUES_KEY, "rvps_empty": None, "resource_policy_key": RESOURCE_POLICY_KEY,
            "nvidia_remote": True, "rvps_list_file": None, "rollouts": True, "migrates": True},
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


# -- where the twin finds upstream's files --------------------------------------------------------


def upstream_dir(conformance_crds):
    """``../shared/trustee/operator-templates`` beside the CRD folder the twin was started with.

    ``twin up --conformance ../shared/crds`` (pytest ``--twin-crds=upstream``) names the shared CRDs;
    the operator's templates sit beside them in ``../shared/trustee``. None when not in conformance
    mode or when the folder is absent (the twin then uses its own files).
    """
    if not conformance_crds:
        return None
    folder = Path(conformance_crds).resolve().parent / "trustee" / "operator-templates"
    return folder if folder.is_dir() else None


def upstream_dir_of_state(state_dir):
    """``upstream_dir`` for the twin whose state is ``state_dir`` (its cluster.json says --conformance)."""
    if not state_dir:
        return None
    try:
        info = json.loads((Path(state_dir) / "cluster.json").read_text())
    except (OSError, ValueError):
        return None
    return upstream_dir(info.get("conformance"))


class Sources:
    """The files the operator twin generates from: upstream's (``folder``) or the twin's own (None)."""

    def __init__(self, folder=None):
        self.folder = Path(folder) if folder else None

    @property
    def upstream(self):
        return self.folder is not None

    def _profile(self, profile):
        return "Restricted" if profile == "Restricted" else "Permissive"

    def kbs_config(self, profile, tls_data, layout=None):
        layout = layout or LAYOUTS[DEFAULT_LAYOUT]
        if self.folder:
            template = (self.folder / UPSTREAM_FILES[f"kbs-config-{self._profile(profile)}"]).read_text()
            text = render_go_template(template, tls_data)
        else:
            text = render_own(self._profile(profile), tls_data)
        if not layout.get("nvidia_remote"):
            text = drop_table(text, "attestation_service.verifier_config.nvidia_verifier")
        if layout.get("rvps_list_file"):
            text = drop_table(text, "attestation_service.rvps_config").rstrip("\n") + (
                '\n\n[attestation_service.rvps_config]\ntype = "BuiltIn"\n\n'
                '[attestation_service.rvps_config.storage]\ntype = "LocalJson"\n'
                f'file_path = "{layout["rvps_list_file"]}"\n')
        return text

    def cpu_policy(self):
        return self._read("cpu")

    def gpu_policy(self):
        return self._read("gpu")

    def resource_policy(self, profile):
        # generateResourcePolicyRego: Restricted -> restrictive, anything else -> permissive
        return self._read(f"resource-{self._profile(profile)}")

    def reference_values(self, layout=None):
        layout = layout or LAYOUTS[DEFAULT_LAYOUT]
        if layout.get("rvps_empty") is not None:
            return layout["rvps_empty"]
        if self.folder:
            return (self.folder / UPSTREAM_FILES["reference-values"]).read_text()
        return OWN_EMPTY_REFERENCE_VALUES

    def _read(self, what):
        if self.folder:
            return (self.folder / UPSTREAM_FILES[what]).read_text()
        return (OWN_POLICIES / OWN_FILES[what]).read_text()


# -- TLS data (trustee-operator tlsconfig.go) ------------------------------------------------------

# convertSingleCipher's explicit table: IANA names whose OpenSSL names do not follow the pattern.
_CIPHER_EXCEPTIONS = {
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "DHE-RSA-CHACHA20-POLY1305",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA256": "AES256-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
}


def openssl_cipher(name):
    """An IANA cipher name in OpenSSL's spelling (tlsconfig.go convertSingleCipher); TLS 1.3 names unchanged."""
    if name.startswith(("TLS_AES_", "TLS_CHACHA20_")):
        return name
    if name in _CIPHER_EXCEPTIONS:
        return _CIPHER_EXCEPTIONS[name]
    rest = name.removeprefix("TLS_").replace("_WITH_", "-", 1)
    out = []
    for index, part in enumerate(rest.split("_")):
        if index and part[:1].isdigit() and out:
            out[-1] += part  # AES + 128 -> AES128
        else:
            out.append(part)
    return "-".join(out)


def tls_data_from_trustee_config(tls):
    """KbsConfigTemplateData from TrusteeConfig.spec.tlsConfig (tlsconfig.go GetTLSConfigFromTlsConfig)."""
    if not tls:
        return {"TlsProfile": "intermediate"}
    data = {"TlsProfile": tls.get("profile") or "intermediate"}
    if tls.get("profile") == "custom":
        data["TlsMinVersion"] = tls.get("minVersion") or ""
        data["TlsMaxVersion"] = tls.get("maxVersion") or ""
        if tls.get("ciphers"):
            data["TlsCiphers"] = ":".join(openssl_cipher(c) for c in tls["ciphers"])
        if tls.get("groups"):
            data["TlsGroups"] = ":".join(tls["groups"])
    return data


_OPENSHIFT_TLS_VERSIONS = {"VersionTLS10": "1.0", "VersionTLS11": "1.1", "VersionTLS12": "1.2", "VersionTLS13": "1.3"}


def tls_data_from_apiserver(profile):
    """KbsConfigTemplateData from APIServer.spec.tlsSecurityProfile (tlsconfig.go convertOpenShiftTLSProfile).

    Custom: minimum version and ciphers (already OpenSSL names on OpenShift); OpenShift has no
    maximum version, and groups are not read. An unknown type means intermediate.
    """
    kind = (profile or {}).get("type")
    simple = {"Old": "old", "Intermediate": "intermediate", "Modern": "modern"}
    if kind in simple:
        return {"TlsProfile": simple[kind]}
    if kind == "Custom":
        data = {"TlsProfile": "custom"}
        custom = profile.get("custom")
        if custom is not None:
            data["TlsMinVersion"] = _OPENSHIFT_TLS_VERSIONS.get(custom.get("minTLSVersion"), "")
            if custom.get("ciphers"):
                data["TlsCiphers"] = ":".join(custom["ciphers"])
        return data
    return {"TlsProfile": "intermediate"}


def tls_data(apiserver, tls_config):
    """Which TLS settings the operator renders (tlsconfig.go GetTLSConfigFromCluster).

    The APIServer ``cluster`` object's ``spec.tlsSecurityProfile`` wins whenever it is set; without
    the object, or with the field unset, ``TrusteeConfig.spec.tlsConfig`` decides (intermediate by default).
    """
    profile = ((apiserver or {}).get("spec") or {}).get("tlsSecurityProfile")
    if apiserver is not None and profile is not None:
        return tls_data_from_apiserver(profile)
    return tls_data_from_trustee_config(tls_config)


# -- a renderer for the Go template constructs the operator's kbs-config templates use -------------

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)


class TemplateError(ValueError):
    pass


def render_go_template(text, data):
    """Render ``text`` as Go's text/template would with a struct of strings ``data`` (missing = "").

    Supported: ``{{.Field}}``, ``{{if .Field}}`` (non-empty string is true), ``{{if eq .Field "lit"}}``,
    ``{{else}}``, ``{{end}}``. Anything else raises TemplateError rather than rendering wrongly.
    """
    tokens, pos = [], 0
    for match in _ACTION.finditer(text):
        tokens.append(("text", text[pos:match.start()]))
        tokens.append(("action", match.group(1).strip()))
        pos = match.end()
    tokens.append(("text", text[pos:]))

    def value(expr):
        expr = expr.strip()
        if expr.startswith('"') and expr.endswith('"'):
            return json.loads(expr)
        if re.fullmatch(r"\.[A-Za-z_][A-Za-z0-9_]*", expr):
            return str(data.get(expr[1:], "") or "")
        raise TemplateError(f"unsupported template expression {expr!r}")

    def condition(expr):
        parts = re.findall(r'"(?:[^"\\]|\\.)*"|\S+', expr)
        if len(parts) == 1:
            return value(parts[0]) != ""
        if len(parts) == 3 and parts[0] == "eq":
            return value(parts[1]) == value(parts[2])
        raise TemplateError(f"unsupported condition {expr!r}")

    def block(index, stop):
        """Render tokens from ``index`` until one of ``stop`` actions; return (text, index of the stop)."""
        out = []
        while index < len(tokens):
            kind, body = tokens[index]
            if kind == "text":
                out.append(body)
                index += 1
                continue
            word = body.split(None, 1)[0] if body else ""
            if word in stop:
                return "".join(out), index
            if word == "if":
                taken, index = block(index + 1, ("else", "end"))
                skipped = ""
                if tokens[index][1] == "else":
                    skipped, index = block(index + 1, ("end",))
                out.append(taken if condition(body[2:]) else skipped)
                index += 1  # past {{end}}
                continue
            out.append(value(body))
            index += 1
        if stop:
            raise TemplateError(f"template ends inside a block (expected {' or '.join(stop)})")
        return "".join(out), index

    rendered, _ = block(0, ())
    return rendered


# -- the twin's own kbs-config (same document as upstream's template, written from the facts) ------


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def _tls_block(data):
    """The [http_server] TLS lines for template data, introduced by the comment the merge keys on."""
    profile = data.get("TlsProfile")
    if not profile:
        return []
    lines = [f"# TLS configuration - Mozilla {profile} profile"]
    if profile == "custom":
        lines.append('tls_profile = "custom"')
        for key, field in (("tls_min_version", "TlsMinVersion"), ("tls_max_version", "TlsMaxVersion"),
                           ("tls_ciphers", "TlsCiphers"), ("tls_groups", "TlsGroups")):
            if data.get(field):
                lines.append(f"{key} = {_toml_value(data[field])}")
    else:
        lines.append(f"tls_profile = {_toml_value(profile)}")
    return lines


def render_own(profile, data):
    """The twin's kbs-config.toml for a profile: what the operator's templates say, in the twin's words.

    Restricted (kbs-config-restricted.toml): HTTPS from the split secrets, TLS lines, tokens of type
    CoCo signed by the attestation key and trusted by its certificate, ``attestation_token_config``.
    Permissive (kbs-config-permissive.toml): plain HTTP, header JWKs trusted, a 5 s AS timeout and
    the older ``attestation_token_broker`` table. Both: DenyAll admin, LocalFs storage with the
    local_json backend (its ``dir_path`` is what the operator writes; RVPS reads ``file_dir_path``),
    SNP VCEKs from the offline store then KDS, NRAS, Intel PCS for DCAP, and the resource plugin on
    kvstorage.
    """
    restricted = profile == "Restricted"
    tables = []

    def table(name, *pairs, array=False):
        tables.append((name, list(pairs), array))

    server = [("sockets", ["0.0.0.0:8080"]), ("insecure_http", not restricted)]
    if restricted:
        server += [("private_key", HTTPS_KEY), ("certificate", HTTPS_CERT)]
    server.append(("worker_count", 4))
    out = ["[http_server]"] + [f"{k} = {_toml_value(v)}" for k, v in server]
    if restricted:
        out += _tls_block(data)
    out.append("")
    table("admin", ("authorization_mode", "DenyAll"))
    if restricted:
        table("attestation_token", ("insecure_header_jwk", False), ("attestation_token_type", "CoCo"),
              ("trusted_certs_paths", [TOKEN_CERT]))
        table("attestation_service", ("type", "coco_as_builtin"))
        table("attestation_service.attestation_token_config", ("duration_min", 5))
    else:
        table("attestation_token", ("insecure_header_jwk", True))
        table("attestation_service", ("type", "coco_as_builtin"), ("timeout", 5))
        table("attestation_service.attestation_token_broker", ("duration_min", 5))
    table("attestation_service.rvps_config", ("type", "BuiltIn"), ("storage_type", "LocalJson"))
    table("storage_backend", ("storage_type", "LocalFs"))
    table("storage_backend.backends.local_fs", ("dir_path", STORAGE))
    table("storage_backend.backends.local_json", ("dir_path", RVPS_DIR))
    table("attestation_service.verifier_config.snp_verifier",
          ("vcek_sources", [{"type": "OfflineStore"}, {"type": "KDS"}]))
    table("attestation_service.verifier_config.nvidia_verifier", ("type", "Remote"), ("verifier_url", NRAS_URL))
    table("attestation_service.verifier_config.dcap_verifier", ("collateral_service", INTEL_PCS_URL))
    if restricted:
        table("attestation_service.attestation_token_broker.signer", ("key_path", TOKEN_KEY),
              ("cert_path", TOKEN_CERT))
    table("plugins", ("name", "resource"), ("storage_backend_type", "kvstorage"), array=True)
    for name, pairs, array in tables:
        out.append(f"[[{name}]]" if array else f"[{name}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in pairs]
        out.append("")
    return "\n".join(out)


def render(profile, layout=None, tls=None, upstream=None, apiserver=None):
    """kbs-config.toml for a profile and a TrusteeConfig ``tlsConfig`` (APIServer profile first when given)."""
    return Sources(upstream).kbs_config(profile, tls_data(apiserver, tls), layout)


def drop_table(text, name):
    """``text`` without the table ``[name]`` (its header and lines up to the next table)."""
    out, skipping = [], False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("["):
            skipping = stripped == f"[{name}]"
        if not skipping:
            out.append(line)
    return "\n".join(out)


# -- merging TLS settings into an existing kbs-config.toml (trustee-operator tlsmerge.go) ----------

_TLS_PREFIXES = ("tls_profile =", "tls_min_version =", "tls_max_version =", "tls_ciphers =", "tls_groups =",
                 "# TLS configuration")


# -- the 1.1 -> 1.2 migration of kbs-config.toml's [[plugins]] (trustee-operator migration.go) -----------
# Line-based as upstream is: a plugin section runs from its "[[plugins]]" line to the next line that starts
# with "[" (that header belongs to what follows).


def plugins_sections(text):
    """extractPluginsSections: each [[plugins]] section of ``text``, its lines joined."""
    sections, current = [], None
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped == "[[plugins]]":
            if current:
                sections.append("\n".join(current))
            current = [line]
        elif current is not None:
            if stripped.startswith("["):
                sections.append("\n".join(current))
                current = None
            else:
                current.append(line)
    if current:
        sections.append("\n".join(current))
    return sections


def without_plugins_sections(text):
    """removePluginsSections: ``text`` less its [[plugins]] sections."""
    kept, inside = [], False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped == "[[plugins]]":
            inside = True
        elif inside and stripped.startswith("["):
            inside = False
            kept.append(line)
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def plugins_to_v12(sections):
    """transformPluginsToV12: the resource plugin's 1.1 ``type`` becomes 1.2's ``storage_backend_type``
    (LocalFs is kvstorage and loses its dir_path; Vault keeps its name); other plugins stay as they are."""
    out = []
    for section in sections:
        if 'name = "resource"' in section and 'type = "LocalFs"' in section:
            section = section.replace('type = "LocalFs"', 'storage_backend_type = "kvstorage"')
            section = "\n".join(line for line in section.split("\n") if "dir_path =" not in line)
        elif 'name = "resource"' in section and 'type = "Vault"' in section:
            section = section.replace('type = "Vault"', 'storage_backend_type = "Vault"')
        out.append(section)
    return out


def _is_tls_line(stripped):
    return stripped.startswith(_TLS_PREFIXES)


def extract_tls_lines(text):
    """The TLS lines of [http_server] (from the "# TLS configuration" comment on), as tlsmerge.go extractTlsLines."""
    lines, in_server, in_block = [], False, False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "[http_server]":
            in_server = True
            continue
        if stripped.startswith("["):
            break
        if in_server:
            if stripped.startswith("# TLS configuration"):
                in_block = True
            if in_block or _is_tls_line(stripped):
                lines.append(line)
    return lines


def merge_tls_settings(existing, generated):
    """``existing`` with its [http_server] TLS lines replaced by those of ``generated`` (tlsmerge.go mergeTlsSettings).

    Every other line is kept as users left it; with no TLS lines in ``generated`` (Permissive)
    ``existing`` is returned unchanged.
    """
    wanted = extract_tls_lines(generated)
    if not wanted:
        return existing
    out, in_server, written, in_block = [], False, False, False
    for line in existing.splitlines():
        stripped = line.strip()
        if stripped == "[http_server]":
            in_server = True
            out.append(line)
            continue
        if stripped.startswith("["):
            if in_server and not written:
                out.extend(wanted)
                written = True
            in_server = in_block = False
        if in_server and _is_tls_line(stripped):
            in_block = True
            continue
        if in_server and in_block and not stripped:
            continue
        if in_server and in_block and stripped and not _is_tls_line(stripped):
            in_block = False
        out.append(line)
    if in_server and not written:
        out.extend(wanted)
    return "".join(f"{line}\n" for line in out)


def merge_tls(text, tls, upstream=None, apiserver=None, profile=None):
    """``text`` with the TLS lines the operator would render now for ``tls`` (and the APIServer profile).

    The operator merges the lines of the TrusteeConfig's own profile template; without ``profile``
    it is read off ``text`` (plain HTTP: Permissive, whose template has no TLS lines).
    """
    if profile is None:
        try:
            plain = (tomllib.loads(text).get("http_server") or {}).get("insecure_http", False)
        except tomllib.TOMLDecodeError:
            plain = False
        profile = "Permissive" if plain else "Restricted"
    return merge_tls_settings(text, render(profile, None, tls, upstream, apiserver))


# -- reading the schema as upstream KBS does --------------------------------------------------------

LOCAL_FS_DEFAULT = "/opt/confidential-containers/storage/local_fs"  # key-value-storage local_fs DEFAULT_DIR_PATH
LOCAL_JSON_DEFAULT = "/opt/confidential-containers/storage/local_json"  # local_json FILE_DIR_PATH


def _backends(conf):
    return ((conf.get("storage_backend") or {}).get("backends") or {})


def local_fs_dir(conf):
    """The LocalFs backend's directory (``storage_backend.backends.local_fs.dir_path``, upstream's default)."""
    return (_backends(conf).get("local_fs") or {}).get("dir_path") or LOCAL_FS_DEFAULT


def repository_dir(conf):
    """The resource plugin's kvstorage: LocalFs namespace ``repository`` (kbs resource/backend.rs)."""
    return f"{local_fs_dir(conf)}/repository"


def repository_file(conf, resource_path):
    """The file of resource ``repo/type/tag``: its key with '/' written as the four characters \\x2F (local_fs/mod.rs)."""
    return f"{repository_dir(conf)}/" + resource_path.replace("/", "\\x2F")


def resource_policy_path(conf):
    """The KBS resource policy: namespace ``kbs``, id ``resource-policy`` + ``.rego`` (kbs api_server.rs)."""
    return f"{local_fs_dir(conf)}/kbs/resource-policy.rego"


def attestation_policy_path(conf, policy_id):
    """A built-in AS policy: namespace ``attestation_service_policy`` (attestation-service lib.rs), ``<id>.rego``."""
    return f"{local_fs_dir(conf)}/attestation_service_policy/{policy_id}.rego"


def reference_values_path(conf):
    """RVPS LocalJson: ``<file_dir_path>/reference_value`` (local_json/mod.rs, rvps lib.rs namespace).

    Upstream's LocalJson config field is ``file_dir_path``; the operator's templates write
    ``dir_path``, which serde ignores, so the default directory applies (the operator mounts there).
    """
    return f"{(_backends(conf).get('local_json') or {}).get('file_dir_path') or LOCAL_JSON_DEFAULT}/reference_value"


def dcap_collateral_service(conf):
    service = conf.get("attestation_service") or {}
    return ((service.get("verifier_config") or {}).get("dcap_verifier") or {}).get("collateral_service")


def parse(text):
    return tomllib.loads(text)
