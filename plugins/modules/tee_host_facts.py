#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: tee_host_facts
short_description: Read-only preflight of a confidential GPU host (CPU TEE, IOMMU, GPUs, firmware)
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Reads the host the way the kernel shows it, as if O(root) were C(/) - C(/proc/cpuinfo), C(/proc/cmdline), the
    C(kvm_intel) C(tdx) and C(kvm_amd) C(sev_snp) module parameters, IOMMU groups, PCI devices with their driver and
    IOMMU group, DMI (BIOS vendor and version) and the kernel log.
  - Returns the CPU vendor and model, whether the host is virtualized, the TEE type and whether it is enabled,
    whether the IOMMU is on, every NVIDIA GPU with its model and support level, and C(verdicts) - each problem with
    the fix (BIOS setting, kernel argument or firmware update), from the kernel log markers users hit.
  - With O(gpu), also runs the read-only C(nvidia-smi -q) and C(nvidia-smi conf-compute -f -e -grs -gm -gc -q)
    and reports model, VBIOS, driver and the confidential-computing state. No setting is ever changed.
  - Runs on a RHEL host over SSH, or in a node probe pod that mounts the host at, for example, C(/host).
extends_documentation_fragment:
  - confidential.gpu._attributes
  - confidential.gpu._attributes.INFO_MODULE
options:
  root:
    description: Where the host's filesystem is mounted (C(/) on the host itself).
    type: path
    default: /
  dmesg:
    description:
      - V(auto) runs C(dmesg) (then C(journalctl -k -b)) when O(root=/), else reads C(<root>/var/log/dmesg).
      - V(always) runs the command even with another O(root) (a privileged probe pod shares the host's kernel).
      - V(never) reads only C(<root>/var/log/dmesg) if present.
    type: str
    choices: [auto, always, never]
    default: auto
  gpu:
    description: Run the read-only C(nvidia-smi) queries when C(nvidia-smi) is found.
    type: bool
    default: true
  nvidia_smi:
    description: Path or name of C(nvidia-smi).
    type: str
    default: nvidia-smi
  fail_on_error:
    description: Fail when a verdict has severity C(error), with every error and its fix in the message.
    type: bool
    default: false
notes:
  - Reading the kernel log needs root on most hosts (C(kernel.dmesg_restrict)); without it the TEE markers are not
    checked and a C(dmesg_unavailable) verdict says so.
  - Only the Python standard library is needed on the host.
seealso:
  - module: confidential.gpu.cluster_info
"""

EXAMPLES = r"""
- name: Preflight the bare-metal hosts before installing anything
  confidential.gpu.tee_host_facts:
    fail_on_error: true
  become: true
  register: host

- name: Show the fixes
  ansible.builtin.debug:
    msg: "{{ host.verdicts | map(attribute='fix') | list }}"

- name: From a probe pod that mounts the node at /host
  confidential.gpu.tee_host_facts:
    root: /host
    dmesg: always
    gpu: false
"""

RETURN = r"""
host:
  description:
    - Facts as read. C(cpu) (C(vendor) intel or amd, C(model), C(family), C(model_number), C(flags) that matter),
      C(virtualized), C(tee) (C(type) tdx, snp or null, C(enabled)), C(iommu) (C(enabled), C(groups)), C(gpus)
      (C(pci_address), C(vendor_id), C(device_id), C(model), C(driver), C(iommu_group), C(cc_capable), C(support)),
      C(nvswitches), C(dmi), C(kernel), C(dmesg) markers found.
  returned: always
  type: dict
verdicts:
  description: Every problem found, with C(id), C(severity) (error, warning, info), C(subject), C(message), C(fix) and C(evidence).
  returned: always
  type: list
  elements: dict
ready:
  description: True when no verdict is an error.
  returned: always
  type: bool
gpu:
  description:
    - C(nvidia-smi) facts - C(driver_version), C(gpus) (model, architecture, VBIOS, virtualization mode), C(cc)
      (C(cc_feature), C(cc_environment), C(ready_state), protected memory), C(cc_ready) and C(problems).
  returned: when O(gpu=true) and nvidia-smi was found
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.confidential.gpu.plugins.module_utils import gpu_facts, host_facts

# Read-only queries only: nothing here may set, reset or rotate anything on a GPU.
CONF_COMPUTE_QUERIES = ("f", "e", "grs", "gm", "gc", "q")


def read_dmesg(module, root, mode):
    if mode == "never" or (mode == "auto" and os.path.realpath(root) != "/"):
        return None
    for cmd in (["dmesg"], ["journalctl", "-k", "-b", "--no-pager", "-o", "short-monotonic"]):
        binary = module.get_bin_path(cmd[0])
        if not binary:
            continue
        rc, out, dummy = module.run_command([binary] + cmd[1:])
        if rc == 0 and out.strip():
            return out
    return None


def read_gpu(module):
    binary = module.get_bin_path(module.params["nvidia_smi"])
    if not binary:
        return None
    rc, query, err = module.run_command([binary, "-q"])
    if rc != 0:
        return {"error": (err or query).strip(), "problems": ["nvidia-smi -q failed: " + (err or query).strip()]}
    outputs = {}
    for option in CONF_COMPUTE_QUERIES:
        rc, out, err = module.run_command([binary, "conf-compute", "-" + option])
        outputs[option] = out if rc == 0 else (err or out or "failed")
    return gpu_facts.summarize(query, outputs)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", default="/"),
            dmesg=dict(type="str", choices=["auto", "always", "never"], default="auto"),
            gpu=dict(type="bool", default=True),
            nvidia_smi=dict(type="str", default="nvidia-smi"),
            fail_on_error=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    root = module.params["root"]
    dmesg = read_dmesg(module, root, module.params["dmesg"])
    facts = host_facts.collect(root, dmesg_text=dmesg)
    verdicts = facts.pop("verdicts")
    ready = facts.pop("ready")
    result = dict(changed=False, host=facts, verdicts=verdicts, ready=ready)
    if module.params["gpu"]:
        gpu = read_gpu(module)
        if gpu is not None:
            result["gpu"] = gpu
    if module.params["fail_on_error"] and not ready:
        errors = ["{0}: {1} Fix: {2}".format(v["subject"], v["message"], v["fix"]) for v in verdicts if v["severity"] == "error"]
        module.fail_json(msg="The host is not ready for confidential GPUs: " + " | ".join(errors), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
