# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NVIDIA GPU facts: which models can do confidential computing, and what nvidia-smi says.

PRIVATE to this collection. :data:`SUPPORT_MATRIX` and :func:`lookup` are plain data and a plain
function on purpose: preflight checks elsewhere in the collection import them. The parsers take
the text of ``nvidia-smi -q`` and ``nvidia-smi conf-compute -f|-e|-grs|-gm|-gc|-q`` and never
run anything themselves; callers decide how the text is obtained (read-only commands only).
"""

from __future__ import annotations

import re

__all__ = ["SUPPORT_MATRIX", "SUPPORT_LEVELS", "lookup", "parse_query", "parse_conf_compute", "summarize"]

# tested: Red Hat tested it with OpenShift sandboxed containers (the 2026-05 GPU article).
# upstream: NVIDIA's confidential-containers reference architecture or the validated patterns list it.
# unsupported: no confidential-computing mode, or not listed anywhere for confidential containers.
SUPPORT_LEVELS = ("tested", "upstream", "unsupported")

# PCI device id (lower-case hex, no 0x) -> facts. Names follow pci.ids.
SUPPORT_MATRIX = {
    # Hopper
    "2330": {"name": "H100 SXM5 80GB", "architecture": "hopper", "cc_capable": True, "support": "tested"},
    "2331": {"name": "H100 PCIe", "architecture": "hopper", "cc_capable": True, "support": "tested"},
    "2321": {"name": "H100 NVL", "architecture": "hopper", "cc_capable": True, "support": "tested"},
    "2335": {"name": "H200 SXM 141GB", "architecture": "hopper", "cc_capable": True, "support": "upstream"},
    "233b": {"name": "H200 NVL", "architecture": "hopper", "cc_capable": True, "support": "upstream"},
    "2322": {"name": "H800 PCIe", "architecture": "hopper", "cc_capable": True, "support": "unsupported"},
    "2324": {"name": "H800", "architecture": "hopper", "cc_capable": True, "support": "unsupported"},
    "2329": {"name": "H20", "architecture": "hopper", "cc_capable": True, "support": "unsupported"},
    # Blackwell
    "2901": {"name": "B200", "architecture": "blackwell", "cc_capable": True, "support": "upstream"},
    "29bc": {"name": "B100", "architecture": "blackwell", "cc_capable": True, "support": "upstream"},
    "2bb5": {"name": "RTX PRO 6000 Blackwell Server Edition", "architecture": "blackwell",
             "cc_capable": True, "support": "tested"},
    # Earlier generations: no confidential-computing mode at all.
    "20b0": {"name": "A100 SXM4 40GB", "architecture": "ampere", "cc_capable": False, "support": "unsupported"},
    "20b2": {"name": "A100 SXM4 80GB", "architecture": "ampere", "cc_capable": False, "support": "unsupported"},
    "20b5": {"name": "A100 PCIe 80GB", "architecture": "ampere", "cc_capable": False, "support": "unsupported"},
    "20f1": {"name": "A100 PCIe 40GB", "architecture": "ampere", "cc_capable": False, "support": "unsupported"},
    "2236": {"name": "A10", "architecture": "ampere", "cc_capable": False, "support": "unsupported"},
    "26b5": {"name": "L40", "architecture": "ada", "cc_capable": False, "support": "unsupported"},
    "26b9": {"name": "L40S", "architecture": "ada", "cc_capable": False, "support": "unsupported"},
    "27b8": {"name": "L4", "architecture": "ada", "cc_capable": False, "support": "unsupported"},
    "1eb8": {"name": "Tesla T4", "architecture": "turing", "cc_capable": False, "support": "unsupported"},
}


def _norm_id(device_id):
    text = str(device_id or "").strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    # "10de:2335" as lspci -n prints it
    if ":" in text:
        text = text.rsplit(":", maxsplit=1)[-1]
    return text


def lookup(device_id) -> dict:
    """``{device_id, name, architecture, cc_capable, support, known}`` for a PCI device id.

    Accepts ``0x2335``, ``2335``, ``10de:2335`` or an int. Unknown ids are ``unsupported``
    with ``cc_capable`` False, since nothing says they have a CC mode.
    """
    if isinstance(device_id, int):
        key = "{0:04x}".format(device_id)
    else:
        key = _norm_id(device_id)
    entry = SUPPORT_MATRIX.get(key)
    if entry is None:
        return {"device_id": key or None, "name": None, "architecture": None, "cc_capable": False,
                "support": "unsupported", "known": False}
    return dict(entry, device_id=key, known=True)


# --------------------------------------------------------------------------------------------
# nvidia-smi -q


class _Section(dict):
    """A dict that keeps a repeated key under "<key> (2)" rather than losing it."""

    def put(self, key, value):
        name = key
        index = 2
        while name in self:
            name = "{0} ({1})".format(key, index)
            index += 1
        self[name] = value


def _tree(text):
    """Indentation of ``nvidia-smi -q`` into nested dicts: "Key : value" leaves, bare "Key" sections."""
    root = _Section()
    stack = [(-1, root)]
    for raw in (text or "").splitlines():
        if not raw.strip() or raw.lstrip().startswith("====="):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        while stack and indent <= stack[-1][0]:
            stack.pop()
        parent = stack[-1][1]
        key, sep, value = line.partition(":")
        # "GPU 00000000:00:06.0" holds colons but is a section header, not a key/value line.
        if sep and not re.match(r"^GPU [0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d$", line):
            parent.put(key.strip(), value.strip())
        else:
            child = _Section()
            parent.put(line, child)
            stack.append((indent, child))
    return root


def _get(tree, *path):
    node = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _na(value):
    return None if value in (None, "", "N/A", "Not Supported", "[N/A]") else value


def _mib(value):
    match = re.match(r"^\s*(\d+)\s*MiB\s*$", value or "")
    return int(match.group(1)) if match else None


def parse_query(text: str) -> dict:
    """The facts of ``nvidia-smi -q`` that matter for confidential computing, per GPU.

    Returns ``{driver_version, cuda_version, attached_gpus, gpus: [...]}``; each GPU has
    ``bus_id``, ``product_name``, ``architecture``, ``vbios_version``, ``device_id`` (4 hex
    digits), ``uuid``, ``virtualization_mode``, ``gsp_firmware_version``, ``mig_mode``,
    ``protected_memory_mib`` ({total, used, free}) and ``support`` (from :func:`lookup`).
    """
    tree = _tree(text)
    gpus = []
    for key, section in tree.items():
        if not key.startswith("GPU ") or not isinstance(section, dict):
            continue
        raw_id = _na(_get(section, "PCI", "Device Id")) or ""
        # NVML reports device and vendor in one word: 0x233510DE is device 2335, vendor 10de.
        match = re.match(r"^0x([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})$", raw_id)
        device_id = match.group(1).lower() if match else None
        protected = _get(section, "Conf Compute Protected Memory Usage") or {}
        info = lookup(device_id) if device_id else None
        gpus.append({
            "bus_id": key[4:].strip(),
            "product_name": _na(section.get("Product Name")),
            "architecture": _na(section.get("Product Architecture")),
            "vbios_version": _na(section.get("VBIOS Version")),
            "device_id": device_id,
            "uuid": _na(section.get("GPU UUID")),
            "virtualization_mode": _na(_get(section, "GPU Virtualization Mode", "Virtualization Mode")),
            "gsp_firmware_version": _na(section.get("GSP Firmware Version")),
            "mig_mode": _na(_get(section, "MIG Mode", "Current")),
            "protected_memory_mib": {k.lower(): _mib(protected.get(k)) for k in ("Total", "Used", "Free")}
            if isinstance(protected, dict) and protected else None,
            "support": info,
        })
    attached = _na(tree.get("Attached GPUs"))
    return {
        "driver_version": _na(tree.get("Driver Version")),
        "cuda_version": _na(tree.get("CUDA Version")),
        "attached_gpus": int(attached) if attached and attached.isdigit() else None,
        "gpus": gpus,
    }


# --------------------------------------------------------------------------------------------
# nvidia-smi conf-compute


# (regex over the key, our field) for the "Key: value" lines conf-compute prints.
_CC_KEYS = (
    (r"^cc status$", "cc_feature"),                       # -f
    (r"^cc state$", "cc_feature"),                        # -q
    (r"^cc environment$", "cc_environment"),              # -e
    (r"ready state$", "ready_state"),                     # -grs, -q
    (r"^cpu cc capabilities$", "cpu_cc_capabilities"),    # -gc, -q
    (r"^gpu cc capabilities$", "gpu_cc_capabilities"),    # -gg, -q
    (r"^multi-gpu mode$", "multi_gpu_mode"),              # -mgm, -q
    (r"devtools mode$", "devtools_mode"),                 # -d
    (r"^protected memory size$", "protected_memory_kib"),     # -gm
    (r"^unprotected memory size$", "unprotected_memory_kib"),  # -gm
)
_CC_ERROR = re.compile(r"not supported|failed|error|unknown option|invalid", re.IGNORECASE)


def _cc_value(field, value):
    value = value.strip()
    if field.endswith("_kib"):
        match = re.match(r"^(\d+)\s*KiB$", value)
        return int(match.group(1)) if match else None
    value = value.lower()
    if field == "ready_state":
        # -grs says "not-ready"/"ready", -q says "Not Ready"/"Ready".
        return value.replace(" ", "-")
    return value


def parse_conf_compute(text: str) -> dict:
    """Any ``nvidia-smi conf-compute`` output (``-f``, ``-e``, ``-grs``, ``-gm``, ``-gc``, ``-q``, ...).

    Known lines become normalised lower-case fields (``cc_feature``, ``cc_environment``,
    ``ready_state``, ``cpu_cc_capabilities``, ``gpu_cc_capabilities``, ``multi_gpu_mode``,
    ``devtools_mode``); ``-gm`` gives ``gpus: [{index, name, uuid, protected_memory_kib,
    unprotected_memory_kib}]``. Other lines are kept under ``other``; an error message from
    nvidia-smi lands in ``error``.
    """
    result = {"other": {}}
    gpus = []
    current = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("====="):
            continue
        header = re.match(r"^GPU (\d+): (.*?)(?: \(UUID: ([^)]+)\))?$", line)
        if header:
            current = {"index": int(header.group(1)), "name": header.group(2), "uuid": header.group(3)}
            gpus.append(current)
            continue
        key, sep, value = line.partition(":")
        if not sep:
            if _CC_ERROR.search(line):
                result["error"] = line
            continue
        normal = key.strip().lower()
        for pattern, field in _CC_KEYS:
            if re.search(pattern, normal):
                parsed = _cc_value(field, value)
                if field.endswith("_kib") and current is not None:
                    current[field] = parsed
                else:
                    result[field] = parsed
                break
        else:
            if _CC_ERROR.search(line):
                result["error"] = line
            else:
                result["other"][key.strip()] = value.strip()
    if gpus:
        result["gpus"] = gpus
    if not result["other"]:
        del result["other"]
    return result


def summarize(query_text: str | None = None, conf_compute: dict | None = None) -> dict:
    """One view of a node's GPUs for reports: model, firmware, driver and CC state, with problems.

    ``conf_compute`` maps option names (``"f"``, ``"e"``, ``"grs"``, ``"gm"``, ``"gc"``, ``"q"``)
    to their outputs; any subset is fine.
    """
    query = parse_query(query_text) if query_text else {"driver_version": None, "gpus": []}
    cc = {}
    for option in ("q", "f", "e", "grs", "gc", "gm", "d", "mgm", "gg"):
        text = (conf_compute or {}).get(option)
        if text:
            parsed = parse_conf_compute(text)
            for key, value in parsed.items():
                if key == "other":
                    continue
                cc.setdefault(key, value)
                if option != "q" and key != "error":
                    cc[key] = value  # the single-purpose option is the authority for its field
    gpus = []
    for gpu in query["gpus"]:
        info = gpu["support"] or lookup(None)
        gpus.append({
            "bus_id": gpu["bus_id"],
            "model": gpu["product_name"],
            "architecture": gpu["architecture"],
            "vbios_version": gpu["vbios_version"],
            "device_id": gpu["device_id"],
            "virtualization_mode": gpu["virtualization_mode"],
            "protected_memory_mib": gpu["protected_memory_mib"],
            "cc_capable": info["cc_capable"],
            "support": info["support"],
        })
    problems = []
    feature = cc.get("cc_feature")
    if feature is not None and feature != "on":
        problems.append("CC mode is {0}: the GPU will not attest; set it on through the GPU Operator "
                        "(node label nvidia.com/cc.mode=on), which resets the GPU.".format(feature))
    if feature == "devtools" or cc.get("devtools_mode") == "on":
        problems.append("CC devtools mode is on: measurements do not match production RIMs; never use it in production.")
    if cc.get("ready_state") not in (None, "ready") and feature == "on":
        problems.append("CC mode is on but the GPUs are not ready: the guest driver sets the ready state "
                        "after attestation; in a CVM, attest before use.")
    if cc.get("cc_environment") not in (None, "production") and feature == "on":
        problems.append("CC environment is {0}, not production.".format(cc.get("cc_environment")))
    for gpu in gpus:
        if not gpu["cc_capable"]:
            problems.append("{0} ({1}) has no confidential-computing mode.".format(gpu["model"], gpu["device_id"]))
    if "error" in cc:
        problems.append("nvidia-smi conf-compute reported: " + cc["error"])
    return {
        "driver_version": query.get("driver_version"),
        "cuda_version": query.get("cuda_version"),
        "gpus": gpus,
        "cc": cc,
        "cc_ready": feature == "on" and cc.get("ready_state") == "ready",
        "problems": problems,
    }
