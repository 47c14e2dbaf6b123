#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: olm_operator
short_description: Install, pin, upgrade or remove an operator through OLM, approving only what was asked for
version_added: 0.1.0
author:
  - confidential.gpu team (@confidential-gpu)
description:
  - Installs an operator from an OLM catalog into its own namespace with its own OperatorGroup, pinned to one
    version (C(startingCSV)) with C(Manual) InstallPlan approval by default.
  - Before subscribing it checks that the CatalogSource is C(READY) and that the package, the channel and the
    version exist in that catalog (its PackageManifest listed by the C(catalog) and C(catalog-namespace) labels, since
    a GET by name returns the package of any catalog); when one does not, the error lists what does.
  - OLM upgrades to the CSV nearest the channel head that replaces the installed one, lists it in C(skips) or
    includes its version in its C(olm.skipRange); a pinned version the head skips over cannot be reached by upgrade,
    so it is refused before anything changes, naming the head and the channels whose head is the pin.
  - It approves an InstallPlan only when the plan names exactly the pinned CSV (or a step of the upgrade towards
    it) and nothing else. OLM resolves all Subscriptions of a namespace into one InstallPlan, so a plan that would
    also install or upgrade another operator is refused, and the error names the extra CSVs.
  - It waits by watching the Subscription, the InstallPlan and the ClusterServiceVersion (no polling) until the
    CSV has succeeded, or fails at the deadline with what it saw last.
  - A Failed CSV is not the end, OLM keeps working on it (Succeeded again once its deployments are healthy, or
    Pending to reinstall), so the module waits through it. It fails at once only where OLM will not get further by
    itself - a CSV C(InstallComponentFailedNoRetry) or failed for its OperatorGroup, an InstallPlan C(Failed),
    C(BundleUnpackFailed), C(ResolutionFailed) with C(ConstraintsNotSatisfiable) - naming the reason.
    C(ErrorPreventedResolution) and C(CatalogSourcesUnhealthy) are retried by OLM (an unhealthy catalog that this
    operator does not use sets both), so the module waits them out; the targeted catalog is checked up front.
  - A Subscription stuck that way is recovered as OpenShift documents it - delete the Subscription, then its CSV
    and InstallPlans, then create the Subscription again - when O(recover_failed=true); otherwise the error
    names these steps.
  - Upgrading is changing O(version); the module approves the InstallPlans up to that version and no further.
  - OLM does not resolve a Subscription again while it waits on an InstallPlan; after a change of channel or
    version, an unapproved plan that names only this operator's CSVs resolved for the earlier request is deleted
    (listed in RV(removed)) so that OLM resolves the new one.
  - Without exactly one OperatorGroup in the namespace OLM creates no InstallPlan and sets no condition; a wait for
    an InstallPlan that times out says so.
  - While waiting it prints a line at each change and at least every 30 seconds, naming what it waits for and what
    it saw last.
  - With O(state=absent) it deletes the Subscription, then the operator's CSVs, then its OperatorGroup (kept
    while other Subscriptions remain in the namespace). It does not delete operands (custom resources the
    operator manages) or the namespace; delete operands first, while the operator still runs to clean up after
    them. That order is the caller's decision; the module warns when operands remain.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - confidential.gpu._attributes
  - confidential.gpu._attributes.ACTIONGROUP_CGPU
options:
  name:
    description:
      - The OLM package, for example C(nfd), C(gpu-operator-certified), C(sandboxed-containers-operator) or
        C(trustee-operator).
    type: str
    required: true
    aliases: [package]
  state:
    description:
      - C(present) installs the operator (or upgrades it to O(version)); C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  namespace:
    description:
      - Namespace of the operator. Defaults to the recommended one for the four packages above
        (C(openshift-nfd), C(nvidia-gpu-operator), C(openshift-sandboxed-containers-operator),
        C(trustee-operator-system)); required for any other package.
    type: str
  channel:
    description:
      - Subscription channel. Defaults to the package's default channel.
    type: str
  version:
    description:
      - The version to pin, as the catalog lists it (a leading C(v) is ignored), for example C(26.3.1).
      - Without O(version) or O(csv), the channel's newest version is installed the first time; later runs
        keep what is installed.
    type: str
  csv:
    description:
      - The ClusterServiceVersion name to pin instead of O(version), for example C(gpu-operator-certified.v26.3.1).
    type: str
  source:
    description:
      - CatalogSource of the package. Defaults to C(certified-operators) for C(gpu-operator-certified) and
        C(redhat-operators) otherwise.
    type: str
  source_namespace:
    description:
      - Namespace of the CatalogSource.
    type: str
    default: openshift-marketplace
  approval:
    description:
      - InstallPlan approval of the Subscription.
      - With C(Automatic), OLM upgrades to the newest version of the channel on its own, so O(version) is only the
        starting point; the module then waits for whatever OLM installs.
    type: str
    choices: [Manual, Automatic]
    default: Manual
  operator_group:
    description:
      - Name of the operator's own OperatorGroup (targeting its namespace only). Any other OperatorGroup in the
        namespace is foreign and makes the module fail, naming it; to adopt an existing one, give its name here.
      - Defaults to C(nvidia-gpu-operator-group) for the GPU operator, C(trustee-operator-group) for Trustee and
        the namespace name otherwise.
    type: str
  subscription:
    description:
      - Name of the Subscription. Defaults to O(name).
    type: str
  timeout:
    description:
      - Seconds to wait for OLM (InstallPlan, then CSV C(Succeeded)), for all upgrade steps together.
    type: int
    default: 600
  recover_failed:
    description:
      - When the Subscription found at the start has a Failed CSV (other than for its OperatorGroup), a Failed
        InstallPlan or C(BundleUnpackFailed), delete the Subscription, then that CSV and the InstallPlans naming
        it, and create the Subscription again (the documented recovery; deleting only the Subscription would
        leave a CSV that a new Subscription cannot adopt). Operands are not touched.
      - Without it, such a Subscription makes the run wait for OLM and end with these steps in the error.
    type: bool
    default: false
  progress_file:
    description: Internal, a pipe the action plugin reads progress lines from while the module runs.
    type: str
attributes:
  check_mode:
    support: full
    details:
      - Reports what would be created or updated, and which InstallPlan would be approved; nothing is written and
        nothing is waited for.
  diff_mode:
    support: full
    details:
      - One diff per object (Namespace, OperatorGroup, Subscription, InstallPlan approval, deletions).
  idempotent:
    support: full
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
notes:
  - The connection options are kubernetes.core's; set them once for C(group/confidential.gpu.cgpu) in C(module_defaults).
  - With C(Manual) approval, OLM offers the next version of the channel as soon as one is installed; that InstallPlan
    stays unapproved until O(version) asks for it.
seealso:
  - module: kubernetes.core.k8s
  - name: OLM InstallPlan approval
    description: Operator Lifecycle Manager documentation on Subscriptions and InstallPlans.
    link: https://olm.operatorframework.io/docs/concepts/crds/installplan/
"""

EXAMPLES = r"""
- name: Install the NVIDIA GPU Operator 26.3.1 from its v26.3 channel
  confidential.gpu.olm_operator:
    name: gpu-operator-certified
    channel: v26.3
    version: 26.3.1
  register: gpu_operator

- name: Upgrade it to 26.3.3 (approves that InstallPlan and nothing past it)
  confidential.gpu.olm_operator:
    name: gpu-operator-certified
    channel: v26.3
    version: 26.3.3

- name: Install Node Feature Discovery (newest of the stable channel) with a longer deadline
  confidential.gpu.olm_operator:
    name: nfd
    timeout: 1200

- name: Remove Trustee (delete its TrusteeConfig first)
  confidential.gpu.olm_operator:
    name: trustee-operator
    state: absent
"""

RETURN = r"""
installed_csv:
  description: The CSV installed now (in check mode, before any change), or null.
  returned: always
  type: str
  sample: gpu-operator-certified.v26.3.1
version:
  description: Version of RV(installed_csv).
  returned: always
  type: str
  sample: 26.3.1
csv:
  description: The CSV pinned by this run (O(state=present)).
  returned: when state is present
  type: str
  sample: gpu-operator-certified.v26.3.1
csv_phase:
  description: Phase of the installed CSV, C(Succeeded) after a successful run.
  returned: always
  type: str
channel:
  description: The Subscription channel.
  returned: when state is present
  type: str
  sample: v26.3
namespace:
  description: The operator's namespace.
  returned: always
  type: str
  sample: nvidia-gpu-operator
operator_group:
  description: Name of the operator's OperatorGroup.
  returned: always
  type: str
subscription:
  description: The Subscription as the API returned it last (empty when absent or in check mode before creation).
  returned: always
  type: dict
approved_install_plans:
  description: InstallPlans this run approved (or would approve, in check mode), oldest first.
  returned: always
  type: list
  elements: str
  sample: [install-7xk2p]
pending_upgrade:
  description: The CSV OLM offers next that was not approved (newer than the pin), or null.
  returned: when state is present
  type: str
  sample: gpu-operator-certified.v26.3.3
progress:
  description: Every progress line printed while waiting (what is awaited and seen, at each change and at least every
    30 seconds), with the seconds since the start.
  returned: always
  type: list
  elements: str
removed:
  description: Objects deleted (or that would be, in check mode) with O(state=absent) or by O(recover_failed),
    as C(Kind namespace/name).
  returned: when state is absent or a recovery ran
  type: list
  elements: str
"""

import re
import time

from ansible_collections.confidential.gpu.plugins.module_utils._k8s import CgpuModule, CoreException
from ansible_collections.confidential.gpu.plugins.module_utils import olm_state
from ansible_collections.confidential.gpu.plugins.module_utils.olm_state import OlmError

OLM = "operators.coreos.com/v1alpha1"
OLM_V1 = "operators.coreos.com/v1"
PACKAGES_API = "packages.operators.coreos.com/v1"

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True, "aliases": ["package"]},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "namespace": {"type": "str"},
    "channel": {"type": "str"},
    "version": {"type": "str"},
    "csv": {"type": "str"},
    "source": {"type": "str"},
    "source_namespace": {"type": "str", "default": "openshift-marketplace"},
    "approval": {"type": "str", "choices": ["Manual", "Automatic"], "default": "Manual"},
    "operator_group": {"type": "str"},
    "subscription": {"type": "str"},
    "timeout": {"type": "int", "default": 600},
    "recover_failed": {"type": "bool", "default": False},
    "progress_file": {"type": "str"},
}


class OlmOperator(CgpuModule):
    def execute_module(self):
        p = self.params
        known = olm_state.defaults(p["name"])
        self.package = p["name"]
        self.namespace = p["namespace"] or known.get("namespace")
        if not self.namespace:
            self.fail_json(msg="namespace is required for package {0}: it has no recommended namespace; known packages: "
                               "{1}".format(self.package, ", ".join(sorted(olm_state.PACKAGES))))
        self.source = p["source"] or known.get("source") or "redhat-operators"
        self.group_name = p["operator_group"] or known.get("operator_group") or self.namespace
        self.sub_name = p["subscription"] or self.package
        self.changed = False
        self.diffs = []
        self.removed = []
        self.missing_plans = set()
        self.deadline = time.monotonic() + p["timeout"]
        try:
            if p["state"] == "absent":
                self.absent()
            else:
                self.present()
        except OlmError as exc:
            self.fail_json(msg=str(exc), **self.result())

    # -- results ----------------------------------------------------------------------------------

    def result(self, **extra):
        out = {"changed": self.changed, "namespace": self.namespace, "operator_group": self.group_name,
               "progress": self.progress_lines}
        out.update(extra)
        if self._diff:
            out["diff"] = self.diffs
        return out

    def record(self, header, before, after):
        self.changed = True
        self.diffs.append({"before_header": header, "after_header": header, "before": before, "after": after})

    def apply(self, definition, existing):
        """Create or update only when something would change (no no-op PATCH on idempotent runs)."""
        if existing is not None and olm_state.contains(existing, definition):
            return existing
        meta = definition["metadata"]
        header = "{0} {1}".format(definition["kind"], "/".join(filter(None, (meta.get("namespace"), meta["name"]))))
        if self.check_mode and meta.get("namespace") and self.namespace_missing:
            # A server-side dry run cannot create into a namespace that would only be created by this run.
            self.record(header, {}, definition)
            return definition
        result = self.ensure(definition)
        if existing is None:
            self.record(header, {}, definition)
        else:
            diff = result.get("diff") or {}
            self.record(header, diff.get("before", {}), diff.get("after", definition))
        return result.get("result") or definition

    # -- present ----------------------------------------------------------------------------------

    def present(self):
        p = self.params
        catalog = self.get(OLM, "CatalogSource", self.source, p["source_namespace"])
        catalogs = self.list(OLM, "CatalogSource", namespace=p["source_namespace"])[0]
        olm_state.check_catalog(self.source, p["source_namespace"], catalog, catalogs)
        # One LIST by the catalog's labels, never a GET by name: that returns the package of any catalog.
        in_catalog = self.list(PACKAGES_API, "PackageManifest", namespace=p["source_namespace"],
                               label_selector=olm_state.manifest_selector(self.source, p["source_namespace"]))[0]
        manifest = olm_state.manifest_in_catalog(in_catalog, self.package, self.source, p["source_namespace"])

        existing_sub = self.get(OLM, "Subscription", self.sub_name, self.namespace)
        conflict = olm_state.subscription_conflict(existing_sub, self.package, self.source)
        if conflict:
            raise OlmError(conflict + "; choose another subscription name")
        self.removed = []
        if existing_sub is not None and p["recover_failed"] and self.stuck(existing_sub):
            existing_sub = self.recover(existing_sub)
        installed = ((existing_sub or {}).get("status") or {}).get("installedCSV")
        pin_csv, pin_version = p["csv"], p["version"]
        if not pin_csv and not pin_version and installed:
            pin_csv = installed  # unpinned: keep what is installed, never upgrade behind the user's back
        target = olm_state.resolve_target(manifest, self.package, self.source, in_catalog, p["channel"], pin_version, pin_csv,
                                          source_namespace=p["source_namespace"])
        self.manifest = manifest
        try:
            steps = olm_state.steps_to(target["entries"], installed, target["csv"])
            jump = olm_state.skip_range_jump(manifest, target["channel"], installed, target["csv"]) if steps else None
            if jump:
                raise OlmError(jump)
        except OlmError as exc:
            if p["approval"] != "Automatic":
                raise
            # Automatic approval upgrades past any pin by design: report it, do not fight OLM.
            self.warn("approval is Automatic: " + str(exc).split(":", maxsplit=1)[0])
            steps = []

        groups = self.list(OLM_V1, "OperatorGroup", namespace=self.namespace)[0]
        foreign = olm_state.foreign_operator_groups(groups, self.group_name)
        if foreign:
            raise OlmError("namespace {0} has OperatorGroup {1} that this module does not manage (it manages {2}): "
                           "a namespace with two OperatorGroups installs nothing. Delete {1}, or adopt it with "
                           "operator_group: {3}".format(self.namespace, ", ".join(foreign), self.group_name, foreign[0]))

        namespace = self.get("v1", "Namespace", self.namespace)
        self.namespace_missing = namespace is None
        self.apply(olm_state.namespace_definition(self.namespace, created=namespace is None), namespace)
        self.apply(olm_state.operator_group_definition(self.group_name, self.namespace),
                   next((g for g in groups if g["metadata"]["name"] == self.group_name), None))
        sub = self.apply(olm_state.subscription_definition(
            self.sub_name, self.namespace, self.package, self.source, p["source_namespace"], target["channel"],
            target["csv"], p["approval"]), existing_sub)

        base = {"csv": target["csv"], "channel": target["channel"], "approved_install_plans": []}
        if self.removed:
            base["removed"] = self.removed
        if self.check_mode:
            self.exit_json(**self.result(**self.predict(existing_sub, target, steps, base)))
        if p["approval"] == "Automatic":
            sub = self.wait_subscription(lambda s: bool((s.get("status") or {}).get("installedCSV")),
                                         "an installed CSV")
            installed = sub["status"]["installedCSV"]
            csv = self.wait_csv(installed)
            if installed != target["csv"]:
                self.warn("approval is Automatic: OLM installed {0}, not the pinned {1}".format(installed, target["csv"]))
            self.exit_json(**self.result(**self.finish(base, sub, csv)))

        csv = None
        while True:
            status = (sub or {}).get("status") or {}
            installed = status.get("installedCSV")
            if installed == target["csv"]:
                break
            allowed = olm_state.steps_to(target["entries"], installed, target["csv"])
            sub = self.wait_subscription(lambda s: self.offers_step(s, installed), "an InstallPlan after {0}".format(
                installed or "nothing installed"))
            status = sub.get("status") or {}
            if status.get("installedCSV") != installed:
                continue  # OLM moved on by itself (someone approved, or Automatic before)
            plan = self.get(OLM, "InstallPlan", status["installPlanRef"]["name"], self.namespace)
            if plan is None:
                # OLM notices (InstallPlanNotFound): an UpgradePending Subscription loses the reference and is
                # resolved again into a new plan. Wait for a reference to another plan.
                self.missing_plans.add(status["installPlanRef"]["name"])
                continue
            verdict = olm_state.install_plan_verdict(plan, allowed)
            if verdict["action"] == "refuse" and olm_state.stale_plan(
                    plan, olm_state.package_csvs(self.manifest), target["entries"], installed, target["csv"]):
                # Resolved for this Subscription's earlier channel or start: OLM does not resolve an
                # UpgradePending Subscription again until its plan is gone (nothingToUpdate).
                self.warn("InstallPlan {0}/{1} for {2} was resolved before the Subscription asked for {3}; deleted so "
                          "that OLM resolves again".format(self.namespace, plan["metadata"]["name"],
                                                           ", ".join(verdict["csvs"]), target["csv"]))
                self.delete(OLM, "InstallPlan", plan["metadata"]["name"], self.removed)
                base["removed"] = self.removed
                self.missing_plans.add(plan["metadata"]["name"])
                continue
            if verdict["action"] == "refuse":
                raise OlmError(olm_state.refusal_message(plan, verdict, allowed))
            if verdict["action"] == "approve":
                self.approve(plan)
                base["approved_install_plans"].append(plan["metadata"]["name"])
            self.wait_plan(plan["metadata"]["name"])
            step = [c for c in verdict["csvs"] if c in allowed][0]
            csv = self.wait_csv(step)
            if step == target["csv"]:
                break
            sub = self.wait_subscription(lambda s: (s.get("status") or {}).get("installedCSV") == step,
                                         "installedCSV {0}".format(step))
            csv = None
        if csv is None:
            csv = self.wait_csv(target["csv"])
        # OLM offers the next version right after an install; read the Subscription once more to report it.
        sub = self.get(OLM, "Subscription", self.sub_name, self.namespace) or sub
        self.exit_json(**self.result(**self.finish(base, sub, csv)))

    def offers_step(self, sub, installed):
        """Done when OLM has moved past ``installed`` or points at an InstallPlan for the next CSV."""
        status = sub.get("status") or {}
        if status.get("installedCSV") != installed:
            return True
        return bool(status.get("installPlanRef")) and status.get("currentCSV") not in (None, installed) \
            and status.get("state") == "UpgradePending" and status["installPlanRef"].get("name") not in self.missing_plans

    def fail_on_condition(self, sub):
        """Raise when the Subscription carries a condition OLM will not get past by itself."""
        fatal = olm_state.fatal_condition(sub)
        if fatal is None:
            return
        ctype, text = fatal
        status = sub.get("status") or {}
        if ctype == "ResolutionFailed":
            raise OlmError("OLM cannot resolve Subscription {0}/{1}: {2}".format(self.namespace, self.sub_name, text))
        plan = (status.get("installPlanRef") or {}).get("name")
        hint = ""
        if ctype == "InstallPlanFailed" and plan:
            hint = "; delete InstallPlan {0}/{1} so that OLM resolves the Subscription again, or".format(
                self.namespace, plan)
        elif ctype == "BundleUnpackFailed":
            hint = "; check the bundle unpack Jobs in {0} and the cluster's pull access to the bundle image, " \
                   "then".format(olm_state.MARKETPLACE)
        raise OlmError("Subscription {0}/{1}: {2}{3} {4}".format(
            self.namespace, self.sub_name, text, hint or ";", self.recovery_text(sub)))

    def recovery_text(self, sub, csvs=None):
        status = (sub or {}).get("status") or {}
        csvs = sorted(set(csvs or [c for c in (status.get("installedCSV"), status.get("currentCSV")) if c]))
        plans = self.list(OLM, "InstallPlan", namespace=self.namespace)[0]
        names = set(olm_state.plans_naming(plans, csvs))
        if (status.get("installPlanRef") or {}).get("name") in {p["metadata"]["name"] for p in plans}:
            names.add(status["installPlanRef"]["name"])
        return "the documented recovery: {0}; or run again with recover_failed: true".format(
            olm_state.recovery_steps(self.namespace, self.sub_name, csvs, sorted(names)))

    # -- recovery of a stuck Subscription -------------------------------------------------------------

    def stuck(self, sub):
        """True when OLM will not finish this Subscription by itself (Failed CSV, plan or unpack)."""
        fatal = olm_state.fatal_condition(sub)
        if fatal and fatal[0] in ("InstallPlanFailed", "BundleUnpackFailed"):
            return True
        status = sub.get("status") or {}
        for name in {c for c in (status.get("installedCSV"), status.get("currentCSV")) if c}:
            csv = self.get(OLM, "ClusterServiceVersion", name, self.namespace)
            csv_status = (csv or {}).get("status") or {}
            if csv_status.get("phase") == "Failed" and csv_status.get("reason") not in olm_state.OPERATOR_GROUP_REASONS:
                return True
        return False

    def recover(self, sub):
        """Subscription first (so OLM recreates nothing), then its CSVs and InstallPlans; the caller recreates it."""
        status = sub.get("status") or {}
        csvs = {c["metadata"]["name"] for c in self.list(
            OLM, "ClusterServiceVersion", namespace=self.namespace,
            label_selector=olm_state.operator_label(self.package, self.namespace))[0]}
        csvs.update(c for c in (status.get("installedCSV"), status.get("currentCSV"))
                    if c and self.get(OLM, "ClusterServiceVersion", c, self.namespace) is not None)
        plans = self.list(OLM, "InstallPlan", namespace=self.namespace)[0]
        names = set(olm_state.plans_naming(plans, csvs))
        if (status.get("installPlanRef") or {}).get("name") in {p["metadata"]["name"] for p in plans}:
            names.add(status["installPlanRef"]["name"])
        self.warn("recover_failed: recreating Subscription {0}/{1} ({2})".format(
            self.namespace, self.sub_name, olm_state.describe_subscription(sub)))
        self.delete(OLM, "Subscription", self.sub_name, self.removed)
        for name in sorted(csvs):
            self.delete(OLM, "ClusterServiceVersion", name, self.removed)
        for name in sorted(names):
            self.delete(OLM, "InstallPlan", name, self.removed)
        return None

    def predict(self, existing_sub, target, steps, base):
        """Check mode: which InstallPlan would be approved, without writing or waiting."""
        status = (existing_sub or {}).get("status") or {}
        installed = status.get("installedCSV")
        extra = dict(base, installed_csv=installed, subscription=existing_sub or {}, version=None, csv_phase=None)
        if installed:
            csv = self.get(OLM, "ClusterServiceVersion", installed, self.namespace)
            extra["version"] = ((csv or {}).get("spec") or {}).get("version")
            extra["csv_phase"] = ((csv or {}).get("status") or {}).get("phase")
        if installed == target["csv"]:
            if extra["csv_phase"] != "Succeeded":
                self.changed = True  # a run would wait for it; say so rather than claim all is done
            return extra
        if self.params["approval"] == "Manual":
            plan = None
            if status.get("installPlanRef") and status.get("currentCSV") in steps:
                plan = self.get(OLM, "InstallPlan", status["installPlanRef"]["name"], self.namespace)
            if plan is not None:
                verdict = olm_state.install_plan_verdict(plan, steps)
                if verdict["action"] == "refuse":
                    raise OlmError(olm_state.refusal_message(plan, verdict, steps))
                if verdict["action"] == "approve":
                    extra["approved_install_plans"].append(plan["metadata"]["name"])
                    self.record("InstallPlan {0}/{1}".format(self.namespace, plan["metadata"]["name"]),
                                {"spec": {"approved": False}}, {"spec": {"approved": True}})
            else:
                offer = olm_state.next_offer(self.manifest, target["channel"], installed, steps)
                self.record("InstallPlan (not created yet) for {0}".format(", ".join(steps)),
                            {}, {"spec": {"clusterServiceVersionNames": [offer] if offer else [], "approved": True}})
        self.changed = True
        return extra

    def approve(self, plan):
        name = plan["metadata"]["name"]
        # One merge patch: the plan was just read and judged, so no second read and no strategic-merge attempt.
        try:
            self.patch(OLM, "InstallPlan", name, {"spec": {"approved": True}}, namespace=self.namespace)
        except CoreException as exc:
            raise OlmError("Approving InstallPlan {0}/{1} failed: {2}".format(self.namespace, name, exc))
        self.record("InstallPlan {0}/{1}".format(self.namespace, name),
                    {"spec": {"approved": False}}, {"spec": {"approved": True}})

    def finish(self, base, sub, csv):
        status = (sub or {}).get("status") or {}
        pending = status.get("currentCSV") if status.get("currentCSV") != status.get("installedCSV") else None
        return dict(base, installed_csv=csv["metadata"]["name"], version=(csv.get("spec") or {}).get("version"),
                    csv_phase=(csv.get("status") or {}).get("phase"), subscription=sub, pending_upgrade=pending)

    # -- waiting (watches, one deadline for the whole run) -------------------------------------------

    def remaining(self):
        return max(1, int(self.deadline - time.monotonic()))

    def watch(self, kind, condition, what, name):
        try:
            return self.watch_until(OLM, kind, condition, self.remaining(), what, namespace=self.namespace,
                                    field_selector="metadata.name={0}".format(name))
        except CoreException as exc:
            # One deadline covers every wait of the run: report it, not what was left of it for this wait.
            raise OlmError(re.sub(r"^Timed out after \d+s", "Timed out after {0}s".format(self.params["timeout"]), str(exc)))

    def wait_subscription(self, predicate, what):
        def condition(objects):
            sub = objects.get((self.namespace, self.sub_name))
            if sub is None:
                return False, "Subscription {0}/{1} not found".format(self.namespace, self.sub_name)
            self.fail_on_condition(sub)
            return predicate(sub), olm_state.describe_subscription(sub)

        try:
            objects = self.watch("Subscription", condition, "Subscription {0}/{1} to show {2}".format(
                self.namespace, self.sub_name, what), self.sub_name)
        except OlmError as exc:
            # Without exactly one OperatorGroup OLM resolves nothing and says so nowhere: say it here.
            problem = olm_state.operator_group_problem(
                self.namespace, self.list(OLM_V1, "OperatorGroup", namespace=self.namespace)[0])
            if problem and str(exc).startswith("Timed out"):
                raise OlmError("{0}; {1}".format(exc, problem))
            raise
        return objects[(self.namespace, self.sub_name)]

    def wait_plan(self, name):
        """Until the approved InstallPlan is Complete; a Failed one is never retried by OLM."""
        def condition(objects):
            plan = objects.get((self.namespace, name))
            status = (plan or {}).get("status") or {}
            if plan is not None and status.get("phase") == "Failed":
                cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Installed"), {})
                sub = self.get(OLM, "Subscription", self.sub_name, self.namespace)
                raise OlmError("Subscription {0}/{1}: InstallPlanFailed: {2}: {3}; delete InstallPlan {0}/{4} so that "
                               "OLM resolves the Subscription again, or {5}".format(
                                   self.namespace, self.sub_name, cond.get("reason") or "InstallPlanFailed",
                                   cond.get("message") or status.get("message") or "", name, self.recovery_text(sub)))
            # Gone (OLM keeps the newest five plans) counts as done: the CSV is what is waited for next.
            return plan is None or status.get("phase") == "Complete", "InstallPlan {0} {1}".format(
                name, status.get("phase") or "(no phase yet)")

        self.watch("InstallPlan", condition, "InstallPlan {0}/{1} to complete".format(self.namespace, name), name)

    def wait_csv(self, name):
        last = {}

        def condition(objects):
            state, text = olm_state.csv_state(objects.get((self.namespace, name)))
            last["state"] = state
            if state == "failed":
                reason = ((objects[(self.namespace, name)].get("status") or {}).get("reason"))
                if reason in olm_state.OPERATOR_GROUP_REASONS:
                    raise OlmError("{0}; fix the OperatorGroups in {1} (exactly one, targeting namespaces the CSV's "
                                   "install modes support)".format(text, self.namespace))
                sub = self.get(OLM, "Subscription", self.sub_name, self.namespace)
                raise OlmError("{0}; OLM does not retry it: see the operator's pods and events in {1}, then {2}".format(
                    text, self.namespace, self.recovery_text(sub, [name])))
            return state == "succeeded", text

        try:
            objects = self.watch("ClusterServiceVersion", condition, "CSV {0}/{1} to succeed".format(
                self.namespace, name), name)
        except OlmError as exc:
            if last.get("state") != "retrying" or not str(exc).startswith("Timed out"):
                raise
            sub = self.get(OLM, "Subscription", self.sub_name, self.namespace)
            raise OlmError("{0}; see the operator's pods and events in {1}; if it stays Failed, {2}".format(
                exc, self.namespace, self.recovery_text(sub, [name])))
        return objects[(self.namespace, name)]

    # -- absent -----------------------------------------------------------------------------------

    def absent(self):
        sub = self.get(OLM, "Subscription", self.sub_name, self.namespace)
        status = (sub or {}).get("status") or {}
        csvs = {c["metadata"]["name"]: c for c in self.list(
            OLM, "ClusterServiceVersion", namespace=self.namespace,
            label_selector=olm_state.operator_label(self.package, self.namespace))[0]}
        for name in (status.get("installedCSV"), status.get("currentCSV")):
            if name and name not in csvs:
                found = self.get(OLM, "ClusterServiceVersion", name, self.namespace)
                if found:
                    csvs[name] = found
        removed = []
        installed = status.get("installedCSV")
        version = (((csvs.get(installed) or {}).get("spec") or {}).get("version")) if installed else None
        leftovers = []
        for csv in csvs.values():
            for api_version, kind in olm_state.owned_kinds(csv):
                items, served = self.list(api_version, kind)
                leftovers.extend("{0} {1}".format(kind, "/".join(filter(None, (
                    i["metadata"].get("namespace"), i["metadata"]["name"])))) for i in items if served)
        if leftovers:
            self.warn("operands remain and will lose their operator: {0}; delete them first if the operator should "
                      "clean up after them".format(", ".join(sorted(set(leftovers)))))
        # Subscription first, so OLM cannot reinstall the CSVs deleted next.
        if sub is not None:
            self.delete(OLM, "Subscription", self.sub_name, removed)
        for name in sorted(csvs):
            self.delete(OLM, "ClusterServiceVersion", name, removed)
        others = [s["metadata"]["name"] for s in self.list(OLM, "Subscription", namespace=self.namespace)[0]
                  if s["metadata"]["name"] != self.sub_name]
        group = self.get(OLM_V1, "OperatorGroup", self.group_name, self.namespace)
        if group is not None and others:
            self.warn("OperatorGroup {0}/{1} kept: Subscriptions {2} still use it".format(
                self.namespace, self.group_name, ", ".join(sorted(others))))
        elif group is not None:
            self.delete(OLM_V1, "OperatorGroup", self.group_name, removed)
        self.exit_json(**self.result(removed=removed, installed_csv=installed, version=version,
                                     csv_phase=None, subscription={}, approved_install_plans=[]))

    def delete(self, api_version, kind, name, removed):
        header = "{0} {1}/{2}".format(kind, self.namespace, name)
        try:
            self.ensure({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": self.namespace}},
                        state="absent")
        except CoreException as exc:
            # Gone between the read and the delete: the garbage collector removes InstallPlans whose
            # owning Subscription was deleted a moment ago. That is the state asked for.
            if '"reason":"NotFound"' not in str(exc).replace(" ", ""):
                raise
        removed.append(header)
        self.record(header, {"kind": kind, "metadata": {"name": name, "namespace": self.namespace}}, {})


def main():
    module = OlmOperator(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                         mutually_exclusive=[("version", "csv")])
    try:
        module.run()
    except OlmError as exc:  # raised from inside a watch condition
        module.fail_json(msg=str(exc), progress=module.progress_lines)


if __name__ == "__main__":
    main()
