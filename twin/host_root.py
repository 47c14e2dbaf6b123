# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a fake host root that the collection's ``host_facts.collect`` reads like a real one.

Part of the twin (simulated hardware), not of the collection: it lived in the collection's ``module_utils``
until the twin stopped importing the collection. The twin's simulated nodes (``twin.controllers.probe``)
and the collection's unit tests describe a host in a small dict and get the files that a real kernel
would show, so the facts code under test is the very code that runs on real hosts. Only file
writing happens here.

Spec keys (all optional):

``cpu``
    ``vendor`` (``intel``, ``amd`` or a raw vendor_id), ``model`` (model name), ``family``,
    ``model_number``, ``stepping``, ``microcode``, ``flags`` (list), ``count`` (logical CPUs,
    default 2), ``sockets`` (default 1).
``cmdline``
    The kernel command line.
``kernel_release``
    Written to ``/proc/sys/kernel/osrelease``.
``kvm_intel_tdx`` / ``kvm_amd_sev_snp``
    ``"Y"``/``"N"`` (or a bool); absent means the module parameter file does not exist.
``bios``, ``system``
    ``{vendor, version, date}`` and ``{vendor, product, version}`` for DMI.
``gpus``, ``pci_devices``
    Lists of ``{pci_address, vendor_id (default 0x10de for gpus), device_id, class (default
    0x030200 for gpus), driver, iommu_group}``.
``iommu``
    False writes no ``/sys/kernel/iommu_groups`` entries even when devices name a group.
``dmesg``
    List of kernel log lines, written to ``<root>/var/log/dmesg``.
``modprobe``
    ``{file name: text}`` under ``/etc/modprobe.d``.
"""

from __future__ import annotations

import os

__all__ = ["render_root", "SPEC_KEYS"]

SPEC_KEYS = ("cpu", "cmdline", "kernel_release", "kvm_intel_tdx", "kvm_amd_sev_snp", "bios", "system",
             "gpus", "pci_devices", "iommu", "dmesg", "modprobe")

_VENDOR_IDS = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}


def _write(root, rel, text):
    path = os.path.join(root, rel.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _symlink(target, link):
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(target, link)


def _yn(value):
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def _hex(value, width):
    if isinstance(value, int):
        return "0x{0:0{1}x}".format(value, width)
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


def _cpuinfo(cpu):
    vendor = cpu.get("vendor", "intel")
    vendor_id = _VENDOR_IDS.get(vendor, vendor)
    count = int(cpu.get("count", 2))
    sockets = max(1, int(cpu.get("sockets", 1)))
    per_socket = max(1, count // sockets)
    blocks = []
    for index in range(count):
        lines = [
            ("processor", index),
            ("vendor_id", vendor_id),
            ("cpu family", cpu.get("family", 6 if vendor_id == "GenuineIntel" else 25)),
            ("model", cpu.get("model_number", 143 if vendor_id == "GenuineIntel" else 17)),
            ("model name", cpu.get("model", "Test CPU")),
            ("stepping", cpu.get("stepping", 8)),
            ("microcode", cpu.get("microcode", "0x2b000603")),
            ("physical id", min(index // per_socket, sockets - 1)),
            ("flags", " ".join(cpu.get("flags", []))),
        ]
        blocks.append("\n".join("{0}\t: {1}".format(k, v) for k, v in lines))
    return "\n\n".join(blocks) + "\n\n"


def _pci(root, device, iommu):
    address = device["pci_address"]
    base = os.path.join(root, "sys/bus/pci/devices", address)
    os.makedirs(base, exist_ok=True)
    _write(base, "vendor", _hex(device.get("vendor_id", 0x10DE), 4) + "\n")
    _write(base, "device", _hex(device["device_id"], 4) + "\n")
    _write(base, "class", _hex(device.get("class", 0x030200), 6) + "\n")
    driver = device.get("driver")
    if driver:
        os.makedirs(os.path.join(root, "sys/bus/pci/drivers", driver), exist_ok=True)
        _symlink("../../../../bus/pci/drivers/" + driver, os.path.join(base, "driver"))
    group = device.get("iommu_group")
    if group is not None and iommu:
        group = str(group)
        group_dir = os.path.join(root, "sys/kernel/iommu_groups", group, "devices")
        os.makedirs(group_dir, exist_ok=True)
        _symlink("../../../../kernel/iommu_groups/" + group, os.path.join(base, "iommu_group"))
        _symlink("../../../../bus/pci/devices/" + address, os.path.join(group_dir, address))


def render_root(root: str, spec: dict) -> None:
    """Write the files :func:`host_facts.collect` reads for the host ``spec`` describes."""
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError("unknown host spec keys {0}; valid keys: {1}".format(unknown, ", ".join(SPEC_KEYS)))
    os.makedirs(root, exist_ok=True)
    _write(root, "proc/cpuinfo", _cpuinfo(spec.get("cpu", {})))
    if "cmdline" in spec:
        _write(root, "proc/cmdline", spec["cmdline"] + "\n")
    if "kernel_release" in spec:
        _write(root, "proc/sys/kernel/osrelease", spec["kernel_release"] + "\n")
    if spec.get("kvm_intel_tdx") is not None:
        _write(root, "sys/module/kvm_intel/parameters/tdx", _yn(spec["kvm_intel_tdx"]) + "\n")
    if spec.get("kvm_amd_sev_snp") is not None:
        _write(root, "sys/module/kvm_amd/parameters/sev_snp", _yn(spec["kvm_amd_sev_snp"]) + "\n")
    dmi = {}
    bios = spec.get("bios", {})
    system = spec.get("system", {})
    for field, value in (("bios_vendor", bios.get("vendor")), ("bios_version", bios.get("version")),
                         ("bios_date", bios.get("date")), ("sys_vendor", system.get("vendor")),
                         ("product_name", system.get("product")), ("product_version", system.get("version"))):
        if value is not None:
            dmi[field] = value
    for field, value in dmi.items():
        _write(root, os.path.join("sys/class/dmi/id", field), str(value) + "\n")
    iommu = spec.get("iommu", True)
    os.makedirs(os.path.join(root, "sys/kernel/iommu_groups"), exist_ok=True)
    for gpu in spec.get("gpus", []):
        _pci(root, gpu, iommu)
    for device in spec.get("pci_devices", []):
        _pci(root, dict({"class": 0x020000}, **device), iommu)
    if "dmesg" in spec:
        _write(root, "var/log/dmesg", "".join(line + "\n" for line in spec["dmesg"]))
    for name, text in (spec.get("modprobe") or {}).items():
        _write(root, os.path.join("etc/modprobe.d", name), text)
