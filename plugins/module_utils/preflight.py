# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The preflight verdicts: can this cluster run confidential GPUs, and what to fix first (pure functions).

PRIVATE to this collection. Inputs are API objects as dicts; each check returns one verdict
``{name, title, status, summary, details, fix}`` with status ``pass``, ``warn`` or ``fail``.

Where hardware facts come from: the API knows nothing of CPUs, TEEs and GPUs until Node Feature
Discovery has labelled the nodes (labels) and published their features (NodeFeature objects with
the PCI device ids). Preflight only reads, so before NFD runs those checks say so (``warn``, fix:
run the nfd role, which changes nothing on the hosts) instead of guessing; afterwards they are
exact. A TEE that the hardware has but the kernel has not enabled yet (TDX before
``kvm_intel.tdx=1``) cannot be told from a missing one through the API: that is a ``warn`` too.
Firmware (BIOS TDX/SNP settings, the TDX module, the RMP table) is invisible to the API altogether;
when the caller passes host facts (``host_facts.collect`` per node, from the node probe or from
each host over SSH) it is judged as the tee_hosts role judges it, otherwise the check says it was
not made.
"""

from __future__ import annotations

from ansible_collections.confidential.gpu.plugins.module_utils import (
    cluster_facts,
    gpu_facts,
    nfd_labels,
    olm_state,
    pod_spec,
    tee_hosts,
)

STATUSES = ("pass", "warn", "fail")
MIN_VERSION = ".".join(str(p) for p in cluster_facts.MIN_OPENSHIFT)
BARE_METAL_PLATFORMS = ("BareMetal",)
# Platforms whose nodes are VMs of a cloud or hypervisor: no TDX/SNP host, no GPU passthrough of our own.
VIRTUAL_PLATFORMS = ("AWS", "Azure", "GCP", "VSphere", "KubeVirt", "OpenStack", "Nutanix", "IBMCloud", "PowerVS",
                     "AlibabaCloud", "Ovirt")
CATALOGS = ("redhat-operators", "certified-operators")
EGRESS = {
    "nras": ("NVIDIA Remote Attestation Service", "https://nras.attestation.nvidia.com",
             "the GPU evidence (or configure Trustee's local NVIDIA verifier and declare offline)"),
    "intel_pcs": ("Intel Provisioning Certification Service", "https://api.trustedservices.intel.com",
                  "TDX quote collateral (or run a PCCS on the cluster and declare offline)"),
    "amd_kds": ("AMD Key Distribution Service", "https://kdsintf.amd.com",
                "SEV-SNP VCEK certificates (or provide Trustee's offline VCEK cache and declare offline)"),
}
EGRESS_VALUES = ("reachable", "offline", "blocked")


def verdict(name, title, status, summary, fix="", details=None):
    return {"name": name, "title": title, "status": status, "summary": summary, "fix": fix if status != "pass" else "",
            "details": list(details or [])}


# -- the checks ------------------------------------------------------------------------------------------


def check_openshift_version(version, minimum=MIN_VERSION):
    title = "OpenShift version"
    parsed, floor = cluster_facts.parse_version(version), cluster_facts.parse_version(minimum)
    if parsed is None:
        return verdict("openshift_version", title, "fail", "no OpenShift version found (ClusterVersion 'version')",
                       "run preflight against an OpenShift cluster (4.21.9 or later)")
    if parsed < floor:
        return verdict("openshift_version", title, "fail",
                       "OpenShift {0} is older than {1}, the first release with confidential GPU support".format(
                           version, minimum),
                       "upgrade the cluster to {0} or later (oc adm upgrade --to={0}), then run preflight again".format(
                           minimum))
    return verdict("openshift_version", title, "pass", "OpenShift {0} (>= {1})".format(version, minimum))


def check_platform(platform, targets):
    title = "Bare metal"
    vms = sorted(v["name"] for v in targets if v["hypervisor"])
    if platform in VIRTUAL_PLATFORMS:
        return verdict("platform", title, "fail",
                       "platform is {0}: the nodes are virtual machines, with no TDX/SEV-SNP host and no GPU "
                       "passthrough of their own".format(platform),
                       "use bare-metal workers with Intel TDX or AMD SEV-SNP (OpenShift installed on platform "
                       "BareMetal or None)")
    if vms:
        return verdict("platform", title, "fail",
                       "NFD sees a hypervisor on {0}: these nodes are virtual machines".format(", ".join(vms)),
                       "run confidential GPU workloads on bare-metal workers; a VM cannot host TDX/SEV-SNP guests "
                       "or pass its GPU through", details=["cpu-cpuid.HYPERVISOR=true on " + n for n in vms])
    if platform in BARE_METAL_PLATFORMS:
        return verdict("platform", title, "pass", "platform BareMetal")
    labelled = [v for v in targets if v["labelled"]]
    if targets and len(labelled) == len(targets):
        return verdict("platform", title, "pass",
                       "platform {0}; NFD sees no hypervisor on any target node".format(platform or "unknown"))
    return verdict("platform", title, "warn",
                   "platform {0} does not say whether the nodes are bare metal, and NFD has not labelled them "
                   "yet".format(platform or "unknown"),
                   "run the confidential.gpu.nfd role, then preflight again (NFD's cpu-cpuid.HYPERVISOR label "
                   "tells virtual machines apart)")


def check_nfd(targets, selector):
    title = "Hardware facts (NFD)"
    if not targets:
        return verdict("nfd_labels", title, "fail", "no node matches the target selector {0!r}".format(selector),
                       "set the node selector to the workers meant for confidential GPUs")
    missing = sorted(v["name"] for v in targets if not v["labelled"])
    if missing:
        return verdict("nfd_labels", title, "warn",
                       "NFD has not labelled {0} of {1} target nodes ({2}): CPU, TEE and GPU checks below cannot "
                       "be exact".format(len(missing), len(targets), ", ".join(missing)),
                       "run the confidential.gpu.nfd role (it only installs NFD and labels nodes), then preflight again")
    return verdict("nfd_labels", title, "pass", "NFD labelled all {0} target nodes".format(len(targets)))


def check_tee(targets, everyone):
    title = "One TEE type"
    contradictions = nfd_labels.contradictions(everyone)
    if contradictions:
        return verdict("tee_type", title, "fail", "TEE labels contradict the CPU vendor", "delete or fix the "
                       "NodeFeatureRule that sets them (give every TEE rule a cpu.model vendor guard), or run the "
                       "confidential.gpu.nfd role, which applies a guarded one", contradictions)
    labelled = [v for v in targets if v["vendor"]]
    vendors = sorted({v["vendor"] for v in labelled})
    if len(vendors) > 1:
        return verdict("tee_type", title, "fail",
                       "target nodes have CPUs of {0}: one cluster supports one TEE type".format(" and ".join(vendors)),
                       "select target nodes of one CPU vendor (Intel TDX or AMD SEV-SNP)",
                       ["{0}: {1}".format(v["name"], v["vendor"]) for v in labelled])
    types = nfd_labels.tee_types(targets)
    if len(types) > 1:
        return verdict("tee_type", title, "fail", "target nodes show {0} TEE types ({1})".format(
            len(types), ", ".join(t.upper() for t in types)), "select target nodes of one TEE type",
            ["{0}: {1}".format(v["name"], ", ".join(v["tee"]) or "none") for v in targets])
    if not labelled:
        return verdict("tee_type", title, "warn", "CPU vendor and TEE unknown: NFD has not labelled the target nodes",
                       "run the confidential.gpu.nfd role, then preflight again")
    vendor = vendors[0]
    tee = nfd_labels.VENDORS.get(vendor)
    if tee is None:
        return verdict("tee_type", title, "fail", "{0} CPUs have no TEE confidential GPUs support".format(vendor),
                       "use Intel (TDX) or AMD (SEV-SNP) workers")
    without = sorted(v["name"] for v in targets if tee not in v["tee"])
    enable = ("TDX: enable it in the BIOS (with SGX factory reset for attestation) and add the kernel argument "
              "kvm_intel.tdx=1 (role confidential.gpu.tee_hosts)" if tee == "tdx" else
              "SEV-SNP: enable SEV-SNP, SNP memory coverage and the IOMMU in the BIOS/firmware (RHEL kernels enable "
              "SNP once the firmware does; kvm_amd.sev_snp=0 on the command line turns it off)")
    if len(without) == len(targets):
        return verdict("tee_type", title, "warn",
                       "{0} CPUs, but no target node has {1} enabled yet".format(vendor, tee.upper()), enable,
                       ["{0}: {1} not enabled".format(n, tee.upper()) for n in without])
    if without:
        return verdict("tee_type", title, "warn", "{0} enabled on {1} of {2} target nodes".format(
            tee.upper(), len(targets) - len(without), len(targets)), enable,
            ["{0}: {1} not enabled".format(n, tee.upper()) for n in without])
    return verdict("tee_type", title, "pass", "{0} on all {1} target nodes".format(tee.upper(), len(targets)))


def node_gpus(node_features):
    """Node name -> NVIDIA display/3D controllers (PCI device ids) from NFD's NodeFeature objects."""
    found = {}
    for item in node_features:
        meta = item.get("metadata") or {}
        node = (meta.get("labels") or {}).get("nfd.node.kubernetes.io/node-name") or meta.get("name")
        elements = ((((item.get("spec") or {}).get("features") or {}).get("instances") or {}).get("pci.device") or {}).get(
            "elements") or []
        devices = [e.get("attributes") or {} for e in elements]
        found[node] = sorted(d.get("device", "") for d in devices
                             if d.get("vendor") == "10de" and str(d.get("class", "")).startswith("03"))
    return found


def check_gpus(targets, gpus_by_node):
    title = "GPUs CC-capable and tested"
    if not any(v["labelled"] for v in targets):
        return verdict("gpus", title, "warn", "GPU models unknown: NFD has not labelled the target nodes",
                       "run the confidential.gpu.nfd role, then preflight again")
    details, worst = [], "pass"
    unknown_models = []
    for view in targets:
        devices = gpus_by_node.get(view["name"])
        if devices is None:
            if view["gpu"]:
                unknown_models.append(view["name"])
            continue
        for device in devices:
            info = gpu_facts.lookup(device)
            name = info["name"] or "unknown NVIDIA device"
            if not info["cc_capable"]:
                worst = "fail"
                details.append("{0}: {1} ({2}) has no confidential-computing mode".format(view["name"], name, device))
            elif info["support"] == "tested":
                details.append("{0}: {1} ({2}) tested by Red Hat".format(view["name"], name, device))
            else:
                worst = "fail" if worst == "fail" else "warn"
                details.append("{0}: {1} ({2}) CC-capable, listed upstream only ({3})".format(
                    view["name"], name, device, info["support"]))
    if unknown_models:
        details.extend("{0}: NVIDIA GPU present, model unknown (no NodeFeature object)".format(n) for n in unknown_models)
        worst = "fail" if worst == "fail" else "warn"
    if not details:
        return verdict("gpus", title, "fail", "no NVIDIA GPU on any target node",
                       "put NVIDIA H100 or RTX PRO 6000 Blackwell GPUs in the target nodes, or select the nodes that "
                       "have them")
    summary = {"pass": "every GPU is CC-capable and tested (H100, RTX PRO 6000 Blackwell)",
               "warn": "GPUs are CC-capable but not all are tested with OpenShift, or their models are unknown",
               "fail": "some GPUs cannot run in confidential-computing mode"}[worst]
    fix = {"pass": "",
           "warn": "expect upstream support only for untested models (Red Hat tested H100 and RTX PRO 6000 Blackwell)",
           "fail": "replace or exclude GPUs without CC mode: every GPU of a node must be in CC mode"}[worst]
    return verdict("gpus", title, worst, summary, fix, details)


def check_tee_gpu_nodes(targets, gpus_by_node):
    title = "A node with TEE and GPU"
    if not any(v["labelled"] for v in targets):
        return verdict("tee_gpu_nodes", title, "warn", "unknown: NFD has not labelled the target nodes",
                       "run the confidential.gpu.nfd role, then preflight again")
    with_gpu = [v for v in targets if v["gpu"] or gpus_by_node.get(v["name"])]
    both = sorted(v["name"] for v in with_gpu if v["tee"])
    if both:
        return verdict("tee_gpu_nodes", title, "pass", "{0} node(s) with TEE and NVIDIA GPU: {1}".format(
            len(both), ", ".join(both)))
    if not with_gpu:
        return verdict("tee_gpu_nodes", title, "fail", "no target node has an NVIDIA GPU",
                       "select the GPU nodes as targets, or add GPUs")
    capable = sorted(v["name"] for v in with_gpu if nfd_labels.VENDORS.get(v["vendor"] or "") and not v["hypervisor"])
    if capable:
        return verdict("tee_gpu_nodes", title, "warn",
                       "GPU nodes with a TEE-capable CPU vendor, TEE not enabled yet: {0}".format(", ".join(capable)),
                       "enable the TEE on them (see tee_type)")
    return verdict("tee_gpu_nodes", title, "fail", "no GPU node can have a TEE", "use bare-metal Intel TDX or AMD "
                   "SEV-SNP hosts for the GPUs")


def check_host_firmware(targets, host_facts):
    """Firmware and host problems no MachineConfig can fix, from host facts when the caller has them."""
    title = "Host firmware"
    if not host_facts:
        return verdict("host_firmware", title, "warn",
                       "not checked: BIOS TEE settings, the TDX module and the SEV-SNP RMP table are invisible to the API",
                       "pass preflight_host_facts - per node, the facts of confidential.gpu.node_probe (short-lived "
                       "read-only pods, so run it before preflight) or of confidential.gpu.tee_host_facts run on each "
                       "host over SSH")
    names = [v["name"] for v in targets]
    facts = {n: host_facts[n] for n in names if n in host_facts}
    unprobed = sorted(n for n in names if n not in host_facts)
    result = tee_hosts.plan(facts, pool="target nodes", require_gpus=False) if facts else {"errors": [], "blockers": {}}
    details = list(result["errors"])
    for name, blockers in sorted(result["blockers"].items()):
        details.extend("{0}: {1} Fix: {2}".format(name, b["message"], b["fix"]) for b in blockers)
    if details:
        return verdict("host_firmware", title, "fail",
                       "{0} host(s) need a fix that no MachineConfig can make".format(len(result["blockers"]) or len(facts)),
                       "apply the fixes below (BIOS settings or firmware updates), then probe and run preflight again",
                       details)
    if unprobed:
        return verdict("host_firmware", title, "warn", "no host facts for {0}".format(", ".join(unprobed)),
                       "probe those nodes too (confidential.gpu.node_probe)",
                       ["{0}: not probed".format(n) for n in unprobed])
    return verdict("host_firmware", title, "pass", "firmware ready on all {0} probed target hosts".format(len(facts)))


def check_drain(topology, nodes, pdbs):
    title = "Drain capacity"
    views = [cluster_facts.node_facts(n) for n in nodes]
    blocking = []
    for pdb in pdbs:
        status = pdb.get("status") or {}
        if int(status.get("expectedPods") or 0) > 0 and int(status.get("disruptionsAllowed") or 0) == 0:
            meta = pdb.get("metadata") or {}
            blocking.append("PodDisruptionBudget {0}/{1} allows 0 disruptions ({2} of {3} pods healthy, {4} "
                            "desired)".format(meta.get("namespace"), meta.get("name"), status.get("currentHealthy", 0),
                                              status.get("expectedPods", 0), status.get("desiredHealthy", 0)))
    if blocking:
        return verdict("drain_capacity", title, "fail",
                       "{0} PodDisruptionBudget(s) would block the drains of the MachineConfig and KataConfig "
                       "rollouts".format(len(blocking)),
                       "scale those workloads up or relax their budgets (maxUnavailable) for the rollout; otherwise "
                       "the node update waits forever", blocking)
    if topology == "SingleReplica" or len(views) == 1:
        return verdict("drain_capacity", title, "warn",
                       "single-node OpenShift: every MachineConfig and KataConfig change reboots the only node",
                       "expect the cluster to be down during each reboot (10 to 60 minutes); batch the host changes "
                       "into one reboot (the roles pause the pool while applying them)")
    workers = [v for v in views if "worker" in v["roles"] and "master" not in v["roles"] and v["schedulable"]]
    if len(workers) == 1:
        return verdict("drain_capacity", title, "warn",
                       "one schedulable worker ({0}): its drain has nowhere to move workloads".format(workers[0]["name"]),
                       "add a worker, or accept that workloads stop during the worker's reboots",
                       ["workers: " + workers[0]["name"]])
    return verdict("drain_capacity", title, "pass", "{0} schedulable workers, no PodDisruptionBudget blocks a "
                   "drain".format(len(workers)))


def check_operator_groups(groups, operators):
    """``operators``: [{name, namespace, operator_group}] the collection will install."""
    title = "Our OperatorGroups"
    problems = []
    for operator in operators:
        present = sorted(g["metadata"]["name"] for g in groups if g["metadata"].get("namespace") == operator["namespace"])
        foreign = [g for g in present if g != operator["operator_group"]]
        if foreign:
            problems.append("namespace {0} (for {1}) has OperatorGroup {2}; the collection manages {3}".format(
                operator["namespace"], operator["name"], ", ".join(foreign), operator["operator_group"]))
    if problems:
        return verdict("operator_groups", title, "fail", "foreign OperatorGroups in the operators' namespaces",
                       "delete them (a namespace with two OperatorGroups installs nothing), or adopt one by giving "
                       "its name as the role's operator group", problems)
    return verdict("operator_groups", title, "pass", "no foreign OperatorGroup in {0}".format(
        ", ".join(sorted({o["namespace"] for o in operators}))))


def check_catalogs(catalogs, manifests, operators, required=CATALOGS):
    title = "Catalog sources ready"
    by_name = {c["metadata"]["name"]: c for c in catalogs}
    problems = []
    for name in required:
        state = olm_state.catalog_state(by_name.get(name)) if name in by_name else None
        if name not in by_name:
            problems.append("CatalogSource {0} does not exist".format(name))
        elif state != "READY":
            problems.append("CatalogSource {0} is {1}".format(name, state or "without a connection state"))
    packages = {m["metadata"]["name"]: (m.get("status") or {}).get("catalogSource") for m in manifests}
    for operator in operators:
        source = operator.get("source")
        if packages.get(operator["name"]) != source and source in by_name:
            problems.append("package {0} is not served by {1}".format(operator["name"], source))
    if problems:
        return verdict("catalog_sources", title, "fail", "OLM cannot install the operators from its catalogs",
                       "check the catalog pods in openshift-marketplace and the cluster's access to "
                       "registry.redhat.io (pull secret, proxy, or a mirrored catalog in a disconnected cluster)",
                       problems)
    return verdict("catalog_sources", title, "pass", "{0} READY, packages {1} found".format(
        ", ".join(required), ", ".join(o["name"] for o in operators)))


def egress_needed(targets):
    """Which attestation services Trustee will call, from the CPU vendors found (all of them when unknown)."""
    vendors = {v["vendor"] for v in targets if v["vendor"]}
    needed = ["nras"]
    if not vendors or "Intel" in vendors:
        needed.append("intel_pcs")
    if not vendors or "AMD" in vendors:
        needed.append("amd_kds")
    return needed


def check_egress(targets, declared):
    title = "Egress Trustee needs"
    declared = declared or {}
    details, worst, undeclared, blocked = [], "pass", [], []
    for key in egress_needed(targets):
        service, url, what = EGRESS[key]
        value = declared.get(key)
        if value in ("reachable", "offline"):
            details.append("{0} ({1}): {2}".format(service, url, value))
        elif value == "blocked":
            blocked.append(key)
            details.append("{0} ({1}): blocked, and no offline replacement declared; Trustee needs it for {2}".format(
                service, url, what))
        else:
            undeclared.append(key)
            details.append("{0} ({1}): not declared; Trustee needs it for {2}".format(service, url, what))
    if blocked:
        worst = "fail"
    elif undeclared:
        worst = "warn"
    summary = {"pass": "every service Trustee calls is declared reachable or replaced offline",
               "warn": "not declared: {0}".format(", ".join(undeclared)),
               "fail": "blocked: {0}".format(", ".join(blocked))}[worst]
    fix = ("declare each in preflight_egress as reachable (the Trustee cluster can reach it) or offline (a local "
           "replacement is configured), e.g. preflight_egress: {{{0}}}".format(
               ", ".join("{0}: reachable".format(k) for k in undeclared + blocked)))
    return verdict("egress", title, worst, summary, fix, details)


# -- all together -------------------------------------------------------------------------------------


def check_workloads(workloads):
    """The workloads meant to run on confidential GPUs, judged from their specs alone (pod_spec)."""
    title = "Confidential GPU workloads"
    details, worst, fixes, flagged = [], "pass", [], 0
    for index, workload in enumerate(workloads):
        name = ((workload or {}).get("metadata") or {}).get("name") or "workload {0}".format(index)
        findings = [f for f in pod_spec.check_pod_spec(workload, name=name) if f["severity"] != "pass"]
        flagged += 1 if findings else 0
        for finding in findings:
            details.append("{0}: {1}".format(name, finding["message"]))
            fixes.append("{0}: {1}".format(name, finding["fix"]))
            worst = "fail" if "fail" in (worst, finding["severity"]) else "warn"
    if worst == "pass":
        return verdict("workloads", title, "pass", "{0} workload(s) ask for at most one confidential GPU, with "
                       "runtime class {1}".format(len(workloads), pod_spec.GPU_RUNTIME_CLASS))
    return verdict("workloads", title, worst, "{0} of {1} workload(s) would not run as confidential GPU pods".format(
        flagged, len(workloads)), "; ".join(fixes), details)


def operators_for(overrides=None):
    """The operators the collection installs, with their namespaces, OperatorGroups and catalogs."""
    found = []
    for name, data in olm_state.PACKAGES.items():
        entry = dict(data, name=name)
        entry.update((overrides or {}).get(name) or {})
        found.append(entry)
    return found


def evaluate(cluster_version, infrastructure, nodes, node_features, catalogs, manifests, operator_groups, pdbs,
             node_selector="node-role.kubernetes.io/worker", egress=None, operators=None, minimum=MIN_VERSION,
             host_facts=None, workloads=None):
    """Every verdict, the overall status and the facts they rest on."""
    operators = operators or operators_for()
    terms = nfd_labels.parse_selector(node_selector)
    everyone = sorted((nfd_labels.node_view(n) for n in nodes), key=lambda v: v["name"] or "")
    targets = [v for v in everyone if nfd_labels.selected(v["labels"], terms)]
    gpus = node_gpus(node_features)
    version = cluster_facts.openshift_version(cluster_version)
    platform = cluster_facts.platform(infrastructure)
    topology = ((infrastructure or {}).get("status") or {}).get("controlPlaneTopology")
    verdicts = [
        check_openshift_version(version, minimum),
        check_platform(platform, targets),
        check_nfd(targets, node_selector),
        check_tee(targets, everyone),
        check_gpus(targets, gpus),
        check_tee_gpu_nodes(targets, gpus),
        check_host_firmware(targets, host_facts or {}),
        check_drain(topology, nodes, pdbs),
        check_operator_groups(operator_groups, operators),
        check_catalogs(catalogs, manifests, operators),
        check_egress(targets, egress),
    ]
    if workloads:
        verdicts.append(check_workloads(workloads))
    return {
        "overall": overall(verdicts),
        "verdicts": verdicts,
        "cluster": {"openshift_version": version, "platform": platform, "control_plane_topology": topology,
                    "cluster_id": ((cluster_version or {}).get("spec") or {}).get("clusterID")},
        "nodes": [{"name": v["name"], "roles": v["roles"], "vendor": v["vendor"], "tee": v["tee"], "gpu": v["gpu"],
                   "gpu_devices": gpus.get(v["name"], []), "hypervisor": v["hypervisor"], "nfd_labelled": v["labelled"]}
                  for v in targets],
        "node_selector": node_selector,
    }


def overall(verdicts):
    statuses = {v["status"] for v in verdicts}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"


def summary_lines(report):
    """The console summary: one line per check, the fix under each that is not a pass."""
    lines = ["confidential GPU preflight: {0} ({1} pass, {2} warn, {3} fail)".format(
        report["overall"].upper(), *[sum(1 for v in report["verdicts"] if v["status"] == s) for s in STATUSES])]
    for item in report["verdicts"]:
        lines.append("[{0}] {1}: {2}".format(item["status"].upper(), item["title"], item["summary"]))
        if item["status"] != "pass":
            lines.extend("       - " + d for d in item["details"])
            lines.append("       fix: " + item["fix"])
    return lines
