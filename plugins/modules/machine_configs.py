#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: machine_configs
short_description: Apply several MachineConfigs to a pool so that each node reboots once
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Creates or updates the given MachineConfigs. Every pool that selects one of them (C(worker) MachineConfigs
    reach custom pools such as C(kata-oc) too) is paused first, and unpaused only once its rendered config holds
    all of them, so that nodes start updating to the final config and reboot once, not once per MachineConfig.
    A pool paused by someone else stays paused, and its nodes update when it is unpaused.
  - Leaves out kernel arguments and files that other MachineConfigs of the pool already give, and does not create
    a MachineConfig whose content is all given already, since a new rendered config reboots every node of the pool.
  - When the pool does not exist yet, creates only the MachineConfigs (they render together with the pool's own
    when it is created, for example OSC's C(kata-oc) by the KataConfig), or creates the pool when O(create_pool).
  - Does not wait for the rollout; use M(confidential.gpu.machine_config_pool_wait).
  - In check mode, reports what would change and which nodes would reboot.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  pool:
    description: The MachineConfigPool the MachineConfigs are for (their C(machineconfiguration.openshift.io/role)).
    type: str
    required: true
  machine_configs:
    description: MachineConfig definitions (C(apiVersion), C(kind), C(metadata), C(spec)).
    type: list
    elements: dict
    required: true
  create_pool:
    description:
      - Create O(pool) when it does not exist, selecting its own and C(worker) MachineConfigs (as OSC's C(kata-oc)
        does) and the nodes labelled O(pool_node_selector). Nodes are not labelled by this module.
    type: bool
    default: false
  pool_node_selector:
    description: Labels of the pool's nodes when O(create_pool) creates it; default C(node-role.kubernetes.io/<pool>).
    type: dict
  pause:
    description: Pause the affected pools while writing, for one reboot per node. Only turn off to reproduce one reboot per MachineConfig.
    type: bool
    default: true
  render_timeout:
    description: Seconds to wait for each paused pool to render the new MachineConfigs before unpausing it.
    type: int
    default: 300
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
"""

EXAMPLES = r"""
- name: TDX and IOMMU for the workers, one reboot per node
  confidential.gpu.machine_configs:
    pool: worker
    machine_configs:
      - apiVersion: machineconfiguration.openshift.io/v1
        kind: MachineConfig
        metadata:
          name: 99-worker-cgpu-iommu
          labels: {machineconfiguration.openshift.io/role: worker}
        spec:
          kernelArguments: [intel_iommu=on]
  register: applied

- name: Say which nodes reboot
  ansible.builtin.debug:
    msg: "rebooting once each: {{ applied.reboot_nodes | join(', ') }}"
"""

RETURN = r"""
machine_configs:
  description: One entry per given MachineConfig, with C(name), C(action) (C(create), C(update), C(unchanged) or
    C(provided), which means other MachineConfigs already give all of it) and C(reason).
  returned: always
  type: list
  elements: dict
affected_pools:
  description: Existing pools whose rendered config changes.
  returned: always
  type: list
  elements: str
reboot_nodes:
  description: Nodes that reboot (once each) because of this change.
  returned: always
  type: list
  elements: str
pool_exists:
  description: Whether O(pool) existed before the run.
  returned: always
  type: bool
pool_created:
  description: Whether the module created O(pool).
  returned: always
  type: bool
pending:
  description: Why nothing reboots yet although MachineConfigs changed (the pool does not exist yet), or empty.
  returned: always
  type: str
paused_by_others:
  description: Affected pools someone else keeps paused; their nodes update when they are unpaused.
  returned: always
  type: list
  elements: str
rendered:
  description: The rendered config each affected pool targets after the change.
  returned: success and not check mode
  type: dict
"""

from ansible_collections.confidential.gpu.plugins.module_utils import machine_config as mcfg
from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException


class MachineConfigs(CgpuModule):
    def execute_module(self):
        p = self.params
        pool_name = p["pool"]
        desired = p["machine_configs"]
        for definition in desired:
            if definition.get("kind") != "MachineConfig" or not (definition.get("metadata") or {}).get("name"):
                raise CoreException("machine_configs: every entry needs kind MachineConfig and metadata.name; got {0}".format(
                    {k: definition.get(k) for k in ("kind", "metadata")}))
        pools = self.list(mcfg.API_VERSION, "MachineConfigPool")[0]
        nodes = self.list("v1", "Node")[0]
        configs = self.list(mcfg.API_VERSION, "MachineConfig")[0]
        plan = mcfg.plan(pool_name, desired, pools, configs, nodes)
        create_pool = p["create_pool"] and not plan["pool_exists"]
        by_pool = {x["metadata"]["name"]: x for x in pools}
        affected = list(plan["affected_pools"])
        reboot = list(plan["reboot_nodes"])
        selector = p["pool_node_selector"] or {"node-role.kubernetes.io/" + pool_name: ""}
        if create_pool:
            joining = sorted(n["metadata"]["name"] for n in nodes
                             if mcfg.selector_matches({"matchLabels": selector}, n["metadata"].get("labels")))
            reboot = sorted(set(reboot) | set(joining))
        pending = ""
        if not plan["pool_exists"] and not create_pool and plan["changed"]:
            pending = ("pool {0} does not exist yet: its nodes get these MachineConfigs, together with the pool's own, "
                       "when it is created".format(pool_name))
        others_paused = sorted(n for n in affected if by_pool[n]["spec"].get("paused")
                               and mcfg.PAUSED_BY not in (by_pool[n]["metadata"].get("annotations") or {}))
        result = {
            "changed": plan["changed"] or create_pool,
            "machine_configs": [{k: e[k] for k in ("name", "action", "reason")} for e in plan["machine_configs"]],
            "affected_pools": affected, "reboot_nodes": reboot, "pool_exists": plan["pool_exists"],
            "pool_created": False, "pending": pending, "paused_by_others": others_paused,
        }
        diffs = []
        # A pool an interrupted run of ours left paused is taken back even when nothing else changes.
        stale = sorted(n for n in set(affected) | {pool_name} if n in by_pool and by_pool[n]["spec"].get("paused")
                       and mcfg.PAUSED_BY in (by_pool[n]["metadata"].get("annotations") or {}))
        if stale:
            result["changed"] = True
            result["unpaused"] = stale
            if not self.check_mode and not plan["changed"] and not create_pool:
                self._unpause(stale)
                self.exit_json(**result)
        if not result["changed"]:
            self.exit_json(**result)
        if self.check_mode:
            for entry in plan["machine_configs"]:
                if entry["action"] in ("create", "update"):
                    diffs.append(self._apply(entry))
            self._exit(result, diffs)
        paused = []
        try:
            if p["pause"]:
                paused = self._pause([by_pool[n] for n in affected if n not in others_paused])
            for entry in plan["machine_configs"]:
                if entry["action"] in ("create", "update"):
                    diffs.append(self._apply(entry))
            if create_pool:
                self.ensure(mcfg.pool_definition(pool_name, selector))
                result["pool_created"] = True
                affected.append(pool_name)
            ours = [e["definition"] for e in plan["machine_configs"] if e["definition"] is not None]
            result["rendered"] = self._rendered(affected, ours, p["render_timeout"])
        finally:
            self._unpause(paused)
        result["affected_pools"] = sorted(set(affected))
        self._exit(result, diffs)

    def _apply(self, entry):
        """Create or update one MachineConfig; its diff (kubernetes.core gives none for a creation)."""
        diff = self.ensure(entry["definition"]).get("diff")
        if not diff and entry["action"] == "create":
            diff = {"before": {}, "after": entry["definition"]}
        return diff

    def _exit(self, result, diffs):
        diffs = [d for d in diffs if d]
        if self._diff and diffs:
            result["diff"] = diffs
        self.exit_json(**result)

    # -- pausing -----------------------------------------------------------------------------

    def _patch_pool(self, name, body):
        self.patch(mcfg.API_VERSION, "MachineConfigPool", name, body)

    def _pause(self, pools):
        """Pause each pool not paused yet; also take back pools an interrupted run of ours left paused."""
        mine = []
        for pool in pools:
            name = pool["metadata"]["name"]
            if pool["spec"].get("paused"):
                mine.append(name)  # paused by an interrupted run of ours (others' pauses were filtered out)
                continue
            self._patch_pool(name, {"metadata": {"annotations": {mcfg.PAUSED_BY: "machine_configs: one reboot per node"}},
                                    "spec": {"paused": True}})
            mine.append(name)
        return mine

    def _unpause(self, names):
        for name in names:
            self._patch_pool(name, {"metadata": {"annotations": {mcfg.PAUSED_BY: None}}, "spec": {"paused": False}})

    # -- rendering -----------------------------------------------------------------------------

    def _rendered(self, pools, ours, timeout):
        """Wait until every affected pool targets a rendered config holding all of our MachineConfigs."""
        if not pools:
            return {}
        wanted = set(pools)
        contents = {}
        targets = {}

        def rendered(objects):
            waiting = []
            for key, pool in objects.items():
                name = key[1]
                if name not in wanted:
                    continue
                configuration = (pool.get("spec") or {}).get("configuration") or {}
                sources = {s.get("name") for s in configuration.get("source") or []}
                mine = [mc for mc in ours if mcfg.selects(pool, mc)]
                target = configuration.get("name")
                if not target or not {mc["metadata"]["name"] for mc in mine} <= sources:
                    waiting.append("{0} has not rendered them yet".format(name))
                    continue
                if target not in contents:
                    found = self.get(mcfg.API_VERSION, "MachineConfig", target)
                    if found is None:
                        waiting.append("{0}: {1} not created yet".format(name, target))
                        continue
                    contents[target] = found.get("spec") or {}
                if not all(mcfg.render_contains(contents[target], mc) for mc in mine):
                    waiting.append("{0}: {1} lacks our content".format(name, target))
                    continue
                targets[name] = target
            missing = wanted - {key[1] for key in objects}
            waiting += ["{0} absent".format(n) for n in sorted(missing)]
            return not waiting, "; ".join(waiting) or "rendered"

        self.watch_until(mcfg.API_VERSION, "MachineConfigPool", rendered, timeout,
                         "the pools {0} to render the MachineConfigs".format(", ".join(sorted(wanted))))
        return targets


def main():
    MachineConfigs(argument_spec={
        "pool": {"type": "str", "required": True},
        "machine_configs": {"type": "list", "elements": "dict", "required": True},
        "create_pool": {"type": "bool", "default": False},
        "pool_node_selector": {"type": "dict"},
        "pause": {"type": "bool", "default": True},
        "render_timeout": {"type": "int", "default": 300},
    }, supports_check_mode=True).run()


if __name__ == "__main__":
    main()
