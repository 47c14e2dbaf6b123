"""The simulated hardware behind the twin's nodes, and the faults asked of it.

Controllers of one twin share a World: each node's Host (CPU, TEE, firmware, GPUs, kernel command
line and module parameters as they are *now*), the profile's timings, and the active faults.
Hosts change only through the twins (a MachineConfig rollout reboots a node, the GPU operator
binds vfio-pci), and every change is announced to the subscribers (the kubelet twin, NFD…).
"""

import copy
import json
import logging
import threading
from pathlib import Path

import yaml

FAULTS_NAMESPACE = "twin-system"
FAULTS_CONFIGMAP = "twin-faults"

log = logging.getLogger("twin.world")


class Host:
    """One machine: what the profile says it is, and its running state."""

    def __init__(self, spec):
        self.spec = copy.deepcopy(spec)
        self.name = spec["name"]
        self.ready = True
        self.boots = 1
        self.cmdline = spec["kernel_cmdline"].split()
        self.files = {}  # path -> content written by MachineConfigs, effective after reboot
        self.extensions = []  # RHCOS extensions of the rendered MachineConfig, installed at reboot
        self.gpus = [dict(g, driver="nvidia") for g in spec["gpus"]]

    @property
    def cpu_vendor(self):
        return self.spec["cpu"]["vendor"]

    @property
    def tee_type(self):
        return self.spec["tee"]["type"]

    def module_params(self):
        """kvm module parameters as the running kernel reports them (/sys/module/.../parameters)."""
        tee = self.spec["tee"]
        params = {}
        if self.cpu_vendor == "intel":
            wants = "kvm_intel.tdx=1" in self.cmdline
            params["kvm_intel.tdx"] = "Y" if wants and tee["type"] == "tdx" and tee["bios_enabled"] else "N"
        else:
            # SEV-SNP is on by default in RHEL kernels once the firmware enables it.
            off = "kvm_amd.sev_snp=0" in self.cmdline
            enabled = tee["type"] == "snp" and tee["bios_enabled"] and not off
            params["kvm_amd.sev"] = "Y" if enabled else "N"
            params["kvm_amd.sev_es"] = "Y" if enabled else "N"
            params["kvm_amd.sev_snp"] = "Y" if enabled else "N"
        return params

    def iommu_enabled(self):
        if self.cpu_vendor == "intel":
            return "intel_iommu=on" in self.cmdline
        return "amd_iommu=off" not in self.cmdline  # AMD hosts default to on

    def snapshot(self):
        return {"name": self.name, "ready": self.ready, "boots": self.boots, "cmdline": " ".join(self.cmdline),
                "module_params": self.module_params(), "iommu": self.iommu_enabled(),
                "gpus": [{k: g[k] for k in ("pci_address", "model", "device_id", "driver")} for g in self.gpus]}


class World:
    def __init__(self, profile, kube, state_dir=None):
        self.profile = profile
        self.kube = kube
        self.state_dir = state_dir
        self.timings = profile["timings"]
        self.hosts = {n["name"]: Host(n) for n in profile["nodes"]}
        self._subscribers = []
        self._runtime_faults = []
        self._lock = threading.RLock()

    # hosts -------------------------------------------------------------------------------------

    def host(self, name):
        return self.hosts.get(name)

    def subscribe(self, fn):
        """fn(host) is called after every change of a host's state."""
        self._subscribers.append(fn)

    def changed(self, host):
        self._snapshot()
        for fn in self._subscribers:
            try:
                fn(host)
            except Exception:  # one subscriber must not starve the others
                log.exception("host-change subscriber failed for %s", host.name)

    def _snapshot(self):
        """hosts.json in the state directory: what `twin status` shows of the simulated hardware."""
        if not self.state_dir:
            return
        target = Path(self.state_dir) / "hosts.json"
        tmp = target.with_suffix(".tmp")
        with self._lock:
            tmp.write_text(json.dumps({n: h.snapshot() for n, h in self.hosts.items()}, indent=2))
            tmp.replace(target)

    # faults ------------------------------------------------------------------------------------

    def set_runtime_faults(self, text):
        try:
            faults = yaml.safe_load(text or "[]") or []
        except yaml.YAMLError as exc:
            log.error("%s/%s: faults.yaml is not YAML: %s", FAULTS_NAMESPACE, FAULTS_CONFIGMAP, exc)
            return
        with self._lock:
            self._runtime_faults = [f for f in faults if isinstance(f, dict)]

    def faults(self):
        with self._lock:
            return list(self.profile.get("faults", [])) + list(self._runtime_faults)

    def fault(self, kind, **match):
        """The first active fault of ``kind`` whose fields all match (a missing field matches anything)."""
        for fault in self.faults():
            if fault.get("kind") != kind:
                continue
            if all(fault.get(k) in (None, v) for k, v in match.items()):
                return fault
        return None
