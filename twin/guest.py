"""The kata shim and the confidential guest of a pod: sandbox start, the TEE launch, and the in-pod API.

The kubelet twin hands a pod whose RuntimeClass handler is a kata one to :func:`start_sandbox`. What
happens there follows upstream, step by step:

* **The shim reads the annotations** (kata ``src/runtime/pkg/oci/utils.go``):
  ``addHypervisorInitdataOverrides`` decodes ``io.katacontainers.config.hypervisor.cc_init_data``
  as standard base64 of a gzip stream, then TOML-decodes it; its three failures end the sandbox
  with ``initdata create gzip reader error: ...``, ``uncompressing initdata with gzip error: ...``
  and ``parsing initdata annotation failed: ...``. ``addHypervisorPathOverrides`` appends the
  ``kernel_params`` annotation to the guest command line (measured: TDX RTMR2 / the SNP launch
  digest, so reference values must be computed for it). An empty annotation means no initdata.
* **The hypervisor starts a TD / SNP guest** only where the host's TEE is on (``kvm_intel.tdx=Y``
  / ``kvm_amd.sev_snp=Y``, see ``twin.world.Host.module_params``) and of the handler's type; the
  initdata digest goes into MRCONFIGID / HOSTDATA (``twin.tee.launch``, which follows kata
  ``govmm/qemu/qemu.go`` ``adjustProperLength`` through ``twin.initdata``). The QEMU error words
  for a TEE that is off are the twin's (QEMU prints ``vm-type TDX not supported by KVM``-like text).
* **The kata agent checks the initdata at boot** (kata ``src/agent/src/initdata.rs``,
  ``initialize_initdata``): ``parse initdata failed`` (serde: version, algorithm, data required),
  ``Unsupported initdata version`` (only ``0.1.0``), ``Unsupported hash algorithm <x>``. The agent
  exiting takes the sandbox down: the pod never leaves ContainerCreating.
* **GPUs**: a ``*-nvidia-gpu`` handler cold-plugs the passthrough GPUs the pod asked for
  (``nvidia.com/pgpu`` or the device plugin's model-named resource) from the node's GPUs bound to
  ``vfio-pci``; other handlers pass none.

A sandbox refused shows as the kubelet shows it: the pod stays ``Pending`` with its containers
waiting in ``ContainerCreating`` and a Warning event ``FailedCreatePodSandBox`` whose message is
``Failed to create pod sandbox: rpc error: code = Unknown desc = CreateContainer failed: <kata's error>``.

**The in-pod API** (:class:`InPodApi`) is guest-components ``api-server-rest`` (``router.rs``
``Router::route``): ``/info`` always; ``/aa/...`` only with the ``attestation`` or ``all``
feature, else 404 ``Attestation Feature Not Enabled``; ``/cdh/resource/<repo>/<type>/<tag>`` only
with ``resource`` (the default) or ``all``, else 404 ``Resource Feature Not Enabled``; a missing
``token_type`` is 400 ``BAD REQUEST``; unknown paths 404 ``URL NOT FOUND``; AA or CDH errors are
500 with the error text. The feature is the kata agent's ``agent.guest_components_rest_api``
kernel parameter (kata ``src/agent/src/config.rs``; default ``resource``). Only a confidential
guest runs it: a plain ``kata`` sandbox (or runc) has nothing on 127.0.0.1:8006
(:func:`api_of` returns None, callers see a refused connection).

The attestation agent (``/aa/token?token_type=kbs``) and the CDH (``/cdh/resource``) each run the
KBS protocol (``twin.kbs.client``) against the KBS of the initdata: aa.toml
``[token_configs.kbs] url, cert`` (guest-components ``attestation-agent/attestation-agent/src/
config/kbs.rs``) and cdh.toml ``[kbc] url, kbs_cert`` (``confidential-data-hub/hub/src/config.rs``),
resolving the KBS host through the twin's zone (``twin.dns``; linked zones reach other twins), with
the GPU's evidence as additional evidence (``nvidia``) when one is passed through. The token body
is ``{"token", "tee_keypair"}`` as the AA's ``get_token`` returns it for ``kbs``.

Faults (profile ``faults:`` or ConfigMap ``twin-system/twin-faults``; fields ``node``, ``namespace``,
``pod`` match, a missing field matches anything):

* ``{kind: guest-gpu-cc-off, node: worker-0}``: the GPU handed to the guest is not in CC mode
  (cc-manager left it off for this guest): its SPDM report says ``cc_mode: off`` (NRAS fails the
  measurements: ``gpu0`` not affirming) and CUDA in the CC guest finds no usable device
  (vectorAdd fails with ``cudaErrorNoDevice``).
* ``{kind: guest-debug, node: worker-0}``: the guest is launched debuggable (TDX
  ``td_attributes.debug`` true / SNP ``policy.debug_allowed``), which the CPU policy refuses.
"""

import base64
import gzip
import hashlib
import json
import logging
import tomllib
import urllib.parse
import zlib

from . import dns, initdata, tee
from .kube import path
from .world import FAULTS_CONFIGMAP, FAULTS_NAMESPACE
from .kbs.client import KbsClient, KbsClientError

log = logging.getLogger("twin.guest")

INITDATA_ANNOTATION = "io.katacontainers.config.hypervisor.cc_init_data"
KERNEL_PARAMS_ANNOTATION = "io.katacontainers.config.hypervisor.kernel_params"
REST_API_OPTION = "agent.guest_components_rest_api"  # kata src/agent/src/config.rs
REST_API_FEATURES = ("all", "attestation", "resource")
DEFAULT_FEATURE = "resource"  # guest-components api-server-rest main.rs DEFAULT_FEATURE
API_VERSION = "v0.13.0"  # what /info reports as api-server-rest's version (simulated)
INITDATA_VERSION = "0.1.0"  # kata src/agent/src/initdata.rs
# OSC's handlers (twin.controllers.osc): kata, kata-<tee>, kata-<tee>-nvidia-gpu.
CC_HANDLERS = {"kata-tdx": "tdx", "kata-snp": "snp", "kata-tdx-nvidia-gpu": "tdx", "kata-snp-nvidia-gpu": "snp"}
GPU_SUFFIX = "-nvidia-gpu"


class SandboxError(Exception):
    """The sandbox did not start; the message is kata's (what CreateContainer failed with)."""


def is_kata(handler):
    return bool(handler) and (handler == "kata" or handler.startswith("kata-"))


# -- the shim: annotations ---------------------------------------------------------------------------


def decode_initdata(value):
    """The TOML text of the annotation, or SandboxError with the Go shim's words (addHypervisorInitdataOverrides)."""
    try:
        raw = base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
    except (ValueError, TypeError) as exc:
        # Go's base64 decoder errors surface through the gzip reader's header read.
        raise SandboxError(f"initdata create gzip reader error: illegal base64 data ({exc})")
    if raw[:2] != b"\x1f\x8b":
        raise SandboxError("initdata create gzip reader error: gzip: invalid header")
    try:
        text = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise SandboxError(f"uncompressing initdata with gzip error: {exc}")
    try:
        toml_text = text.decode("utf-8")
        tomllib.loads(toml_text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SandboxError(f"parsing initdata annotation failed: {exc}")
    return toml_text


def agent_check_initdata(toml_text):
    """The kata agent's checks at boot (src/agent/src/initdata.rs); SandboxError names the agent's words."""
    doc = tomllib.loads(toml_text)
    missing = [f for f in ("version", "algorithm", "data") if f not in doc]
    if missing:
        raise SandboxError(f"kata-agent: parse initdata failed: missing field `{missing[0]}`")
    if doc["version"] != INITDATA_VERSION:
        raise SandboxError("kata-agent: Unsupported initdata version")
    if doc["algorithm"] not in initdata.ALGORITHMS:
        raise SandboxError(f"kata-agent: Unsupported hash algorithm {doc['algorithm']}")
    if not isinstance(doc["data"], dict) or not all(isinstance(v, str) for v in doc["data"].values()):
        raise SandboxError("kata-agent: parse initdata failed: `data` must be a table of strings")
    return doc


def rest_api_feature(kernel_params):
    """``agent.guest_components_rest_api`` of the guest command line (kata agent config.rs), default resource."""
    feature = DEFAULT_FEATURE
    for param in kernel_params.split():
        name, _, value = param.partition("=")
        if name == REST_API_OPTION:
            if value not in REST_API_FEATURES:
                raise SandboxError("kata-agent: invalid guest components rest api feature given. "
                                   "Valid values are `all`, `attestation`, `resource`")
            feature = value
    return feature


def requested_gpus(pod):
    """Passthrough GPUs the pod's containers ask for (nvidia.com/pgpu or a model-named resource)."""
    count = 0
    for container in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", []):
        limits = (container.get("resources") or {}).get("limits") or {}
        for name, value in limits.items():
            if name.startswith("nvidia.com/") and name != "nvidia.com/gpu":
                try:
                    count += int(str(value))
                except ValueError:
                    pass
    return count


def tee_on(host, tee_type):
    """Whether KVM on the host can start a guest of ``tee_type`` (the running kernel's module parameters)."""
    params = host.module_params()
    if tee_type == "tdx":
        return host.spec.get("tee", {}).get("type") == "tdx" and params.get("kvm_intel.tdx") == "Y"
    return host.spec.get("tee", {}).get("type") == "snp" and params.get("kvm_amd.sev_snp") == "Y"


# -- the sandbox ---------------------------------------------------------------------------------------


class Sandbox:
    """One pod VM: its handler, GPUs, command line, and (confidential guests) the TEE VM and the in-pod API."""

    def __init__(self, pod, host, world, handler, gpus, kernel_params, initdata_toml, vm):
        self.pod = pod
        self.host = host
        self.world = world
        self.handler = handler
        self.gpus = gpus
        self.kernel_params = kernel_params
        self.initdata_toml = initdata_toml
        self.vm = vm
        self.confidential = vm is not None
        self.api = InPodApi(self) if self.confidential else None

    def gpu_usable(self):
        """What CUDA in the guest finds: a CC-mode GPU in a confidential guest, a non-CC one in a plain guest."""
        if not self.gpus:
            return False
        mode = self.gpus[0].get("cc_mode", "off")
        return mode == "on" if self.confidential else mode != "on"


def _fault(world, kind, pod, host):
    meta = pod["metadata"]
    return world.fault(kind, node=host.name, namespace=meta.get("namespace"), pod=meta.get("name"))


def _refresh_faults(world):
    """Read the run-time faults from the API now: one set just before this pod was created applies to it.

    The informer that normally feeds the world may not have delivered that write yet (a race between
    two watches); the sandbox starts once per pod, so one GET here costs little.
    """
    cm = world.kube.get_or_none(path("v1", "configmaps", FAULTS_CONFIGMAP, FAULTS_NAMESPACE))
    if cm is not None:
        world.set_runtime_faults((cm.get("data") or {}).get("faults.yaml", "[]"))


def start_sandbox(pod, host, world, handler, taken=()):
    """A started Sandbox for the pod on ``host``, or SandboxError with kata's reason."""
    annotations = pod["metadata"].get("annotations") or {}
    kernel_params = annotations.get(KERNEL_PARAMS_ANNOTATION, "")
    tee_type = CC_HANDLERS.get(handler)
    gpus = []
    if handler.endswith(GPU_SUFFIX):
        wanted = requested_gpus(pod)
        free = [g for g in host.gpus if g.get("driver") == "vfio-pci" and g.get("pci_address") not in taken]
        if wanted > len(free):
            raise SandboxError(f"failed to cold plug {wanted} VFIO device(s): {len(free)} GPU(s) bound to vfio-pci "
                               f"free on {host.name}")
        gpus = [dict(g) for g in free[:wanted]]
    if tee_type is None:
        return Sandbox(pod, host, world, handler, gpus, kernel_params, None, None)
    value = annotations.get(INITDATA_ANNOTATION)
    toml_text = decode_initdata(value) if value else None
    if not tee_on(host, tee_type):
        word = "TDX" if tee_type == "tdx" else "SEV-SNP"
        raise SandboxError(f"failed to launch qemu: exit status 1, error messages from qemu log: qemu-kvm: "
                           f"{word} is not enabled in KVM on {host.name} (kvm module parameters "
                           f"{host.module_params()})")
    if toml_text is not None:
        agent_check_initdata(toml_text)
    rest_api_feature(kernel_params)  # the agent refuses a bad value before anything starts
    _refresh_faults(world)
    if _fault(world, "guest-gpu-cc-off", pod, host):
        for gpu in gpus:
            gpu["cc_mode"] = "off"
    debug = bool(_fault(world, "guest-debug", pod, host))
    vm = tee.launch(host.spec, world.profile["openshift"]["version"], initdata_toml=toml_text, gpus=gpus,
                    debug=debug, cmdline_extra=kernel_params)
    return Sandbox(pod, host, world, handler, gpus, kernel_params, toml_text, vm)


# -- the guest components --------------------------------------------------------------------------------


def _kbs_settings(toml_text, key, table, url_key, cert_key):
    if toml_text is None:
        return None, None
    doc = tomllib.loads(toml_text)
    text = (doc.get("data") or {}).get(key)
    if not text:
        return None, None
    try:
        conf = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None, None
    section = conf
    for part in table:
        section = section.get(part) or {}
    return section.get(url_key), section.get(cert_key)


class _KbsUser:
    """A guest component with a KBS client of its own (the AA's token, the CDH's kbc)."""

    def __init__(self, sandbox, url, cert, what):
        self.sandbox = sandbox
        self.url = url
        self.cert = cert
        self.what = what
        self.client = None

    def attested(self):
        if not self.url:
            raise RuntimeError(f"{self.what}: no KBS URL configured in the initdata")
        if self.client is None or self.client.token is None:
            zone = dns.entries(self.sandbox.world.kube)
            self.client = KbsClient(self.url, self.cert, zone=zone)
            self.client.attest(self.sandbox.vm, initdata_toml=self.sandbox.initdata_toml)
        return self.client


class InPodApi:
    """guest-components api-server-rest on 127.0.0.1:8006 of a confidential guest, called in-process."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.feature = rest_api_feature(sandbox.kernel_params)
        aa_url, aa_cert = _kbs_settings(sandbox.initdata_toml, "aa.toml", ("token_configs", "kbs"), "url", "cert")
        cdh_url, cdh_cert = _kbs_settings(sandbox.initdata_toml, "cdh.toml", ("kbc",), "url", "kbs_cert")
        self.aa = _KbsUser(sandbox, aa_url, aa_cert, "AA") if self.feature in ("all", "attestation") else None
        self.cdh = _KbsUser(sandbox, cdh_url, cdh_cert, "CDH") if self.feature in ("all", "resource") else None

    def get(self, target):
        """(status, body bytes) of ``GET target`` (path and query), as router.rs answers it."""
        url = urllib.parse.urlparse(target)
        params = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/info":
            info = {"version": API_VERSION}
            if self.aa is not None:
                info["tee"] = self.sandbox.vm.tee
                if self.sandbox.vm.gpus:
                    info["additional_tees"] = ["nvidia"]
            info["feature"] = self.feature
            return 200, json.dumps(info).encode()
        parts = url.path.split("/", 3)  # '', root, api, rest
        root = "/" + parts[1] if len(parts) > 2 else None
        if root == "/aa":
            if self.aa is None:
                return 404, b"Attestation Feature Not Enabled"
            if "/" + parts[2] == "/token" and len(parts) == 3:
                if "token_type" not in params:
                    return 400, b"BAD REQUEST"
                return self._token(params["token_type"])
            return 404, b"URL NOT FOUND"
        if root == "/cdh":
            if self.cdh is None:
                return 404, b"Resource Feature Not Enabled"
            if parts[2] == "resource" and len(parts) == 4 and parts[3]:
                return self._resource(parts[3])
            return 404, b"URL NOT FOUND"
        return 404, b"URL NOT FOUND"

    def _token(self, token_type):
        # attestation-agent get_token: only the kbs token type is built in.
        if token_type != "kbs":
            return 500, _rpc_error("AA", f"Get token failed: Unsupported token type {token_type}")
        try:
            client = self.aa.attested()
        except (KbsClientError, RuntimeError, OSError) as exc:
            return 500, _rpc_error("AA", f"Get token failed: {exc}")
        keypair = json.dumps(client.key.as_dict(private=True))
        return 200, json.dumps({"token": client.token, "tee_keypair": keypair}).encode()

    def _resource(self, resource_path):
        try:
            client = self.cdh.attested()
            return 200, client.resource(resource_path)
        except (KbsClientError, RuntimeError, OSError) as exc:
            return 500, _rpc_error("CDH", f"Get Resource failed: kbs://{resource_path}: {exc}")


def _rpc_error(component, message):
    """How api-server-rest shows a ttrpc error (``e.to_string()`` of the client call)."""
    return (f'rpc status: Status {{ code: INTERNAL, message: "[{component}] [ERROR]: {message}", '
            f'details: [], special_fields: SpecialFields {{ unknown_fields: UnknownFields {{ fields: None }}, '
            f'cached_size: CachedSize {{ size: 0 }} }} }}').encode()


def api_of(ctx):
    """The in-pod API the container can reach on 127.0.0.1:8006, or None (nothing listens)."""
    sandbox = (ctx.extra or {}).get("sandbox")
    return sandbox.api if sandbox is not None else None


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()
