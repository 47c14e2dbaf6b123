# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a run will write, as SelfSubjectAccessReviews, and what the answers mean; where the kubeconfig is.

Pure functions for M(confidential.gpu.access_review): the module asks the API server one review per
(verb, resource, namespace) and refuses the run, naming each missing permission, before anything is
written. A review is a ``create`` on ``selfsubjectaccessreviews.authorization.k8s.io`` that the API server
answers and stores nowhere (``kubectl auth can-i`` makes the same request).
"""

from __future__ import annotations

import os

__all__ = ["MODULE_WRITES", "expand", "review_body", "describe", "decide", "refusal_message", "kubeconfig_problem"]

API_VERSION = "authorization.k8s.io/v1"
KIND = "SelfSubjectAccessReview"

# What the collection's own modules write, per module (roles name the module and the namespace it writes in).
# (API group, resource, verbs, namespaced)
MODULE_WRITES = {
    # Namespace, OperatorGroup and Subscription (olm_state's definitions), the approval of the InstallPlan.
    "olm_operator": [("", "namespaces", ("create",), False),
                     ("operators.coreos.com", "operatorgroups", ("create", "patch"), True),
                     ("operators.coreos.com", "subscriptions", ("create", "patch"), True),
                     ("operators.coreos.com", "installplans", ("patch",), True)],
    # The probe namespace (labelled for privileged pods), its pods and their code ConfigMaps, deleted afterwards.
    "node_probe": [("", "namespaces", ("create", "patch"), False),
                   ("", "configmaps", ("create", "delete"), True),
                   ("", "pods", ("create", "delete"), True)],
    # MachineConfigs, and the pools paused while writing (or created with create_pool).
    "machine_configs": [("machineconfiguration.openshift.io", "machineconfigs", ("create", "patch"), False),
                        ("machineconfiguration.openshift.io", "machineconfigpools", ("create", "patch"), False)],
    # The nvidia.com/cc.mode node label.
    "gpu_cc_mode": [("", "nodes", ("patch",), False)],
    # ConfigMaps: the initdata document, the RVPS reference values, the KBS configuration.
    "initdata": [("", "configmaps", ("create", "patch", "delete"), True)],
    "reference_values": [("", "configmaps", ("create", "patch"), True)],
    "trustee_kbs_config": [("", "configmaps", ("create", "patch"), True)],
}


def _qualified(group, resource):
    return "{0}.{1}".format(resource, group) if group else resource


def expand(entries):
    """The reviews to ask, one per (verb, group, resource, namespace), in a stable order, without repeats.

    Each entry is ``{resource, group, verbs, namespace}`` (namespace empty or absent: cluster-wide) or
    ``{module, namespace}``, which stands for what that module writes (MODULE_WRITES). ValueError on an
    entry that is neither, so a typo cannot silently review nothing.
    """
    seen, reviews = set(), []
    for index, entry in enumerate(entries or []):
        if not isinstance(entry, dict):
            raise ValueError("reviews[{0}] is a {1}, expected a dict".format(index, type(entry).__name__))
        namespace = entry.get("namespace") or None
        if entry.get("module"):
            if entry["module"] not in MODULE_WRITES:
                raise ValueError("reviews[{0}].module={1!r} is not one of {2}".format(
                    index, entry["module"], ", ".join(sorted(MODULE_WRITES))))
            rows = [(g, r, v, namespace if namespaced else None) for g, r, v, namespaced in MODULE_WRITES[entry["module"]]]
        elif entry.get("resource") and entry.get("verbs"):
            verbs = entry["verbs"] if isinstance(entry["verbs"], (list, tuple)) else [entry["verbs"]]
            rows = [(entry.get("group") or "", entry["resource"], tuple(verbs), namespace)]
        else:
            raise ValueError("reviews[{0}] needs module, or resource and verbs; got {1}".format(index, sorted(entry)))
        for group, resource, verbs, ns in rows:
            for verb in verbs:
                key = (verb, group, resource, ns)
                if key not in seen:
                    seen.add(key)
                    reviews.append({"verb": verb, "group": group, "resource": resource, "namespace": ns})
    return reviews


def review_body(review):
    """The SelfSubjectAccessReview asking whether the user may ``review``'s verb on its resource."""
    attributes = {"verb": review["verb"], "group": review["group"], "resource": review["resource"]}
    if review.get("namespace"):
        attributes["namespace"] = review["namespace"]
    return {"apiVersion": API_VERSION, "kind": KIND, "spec": {"resourceAttributes": attributes}}


def describe(review):
    """``create subscriptions.operators.coreos.com in namespace openshift-nfd``, ``patch nodes``."""
    text = "{0} {1}".format(review["verb"], _qualified(review["group"], review["resource"]))
    return text + (" in namespace {0}".format(review["namespace"]) if review.get("namespace") else "")


def decide(reviews, statuses):
    """``(allowed, denied)``: the reviews split by the API server's answers (``status`` of each review).

    A review the server answered with ``evaluationError`` and no ``allowed: true`` counts as denied, with
    that error as its reason: RBAC could not say yes.
    """
    allowed, denied = [], []
    for review, status in zip(reviews, statuses):
        status = status or {}
        if status.get("allowed") and not status.get("denied"):
            allowed.append(review)
        else:
            reason = status.get("reason") or status.get("evaluationError") or ""
            denied.append(dict(review, reason=reason))
    return allowed, denied


def refusal_message(denied, total):
    """The one message that refuses the run: every missing permission, and what to do."""
    return ("The user lacks {0} of the {1} permissions this run needs to write: {2}. Nothing was changed. "
            "Grant them (for example cluster-admin for the bring-up) or connect as a user who has them.".format(
                len(denied), total, "; ".join(describe(d) for d in denied)))


def kubeconfig_problem(option, environ, home=None):
    """None when the kubeconfig kubernetes.core would load exists, else the message naming the path and its source.

    ``option`` is the module's C(kubeconfig) (a path, a dict of its content, or None); kubernetes.core takes
    ``K8S_AUTH_KUBECONFIG`` when the option is not set, and without either and outside a pod the kubernetes
    client's own default (``KUBECONFIG``, else ``~/.kube/config``; ``home`` defaults to the user's). Host and
    token options need no file.
    """
    if isinstance(option, dict):
        return None
    source = "the kubeconfig option"
    if not option and environ.get("K8S_AUTH_KUBECONFIG"):
        option, source = environ["K8S_AUTH_KUBECONFIG"], "K8S_AUTH_KUBECONFIG"
    if option:
        path = os.path.expanduser(str(option))
        if not os.path.isfile(path):
            return ("The kubeconfig {0} (from {1}) {2}. Point {1} at the cluster's kubeconfig; nothing was "
                    "changed.".format(path, source, "is not a file" if os.path.exists(path) else "does not exist"))
        return None
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return None  # in a pod: the service account, as kubernetes.core does
    listed = environ.get("KUBECONFIG")
    home = os.path.expanduser("~") if home is None else home
    candidates = [p for p in (listed or "").split(os.pathsep) if p] or [os.path.join(home, ".kube", "config")]
    if any(os.path.isfile(os.path.expanduser(p)) for p in candidates):
        return None
    return ("No kubeconfig: neither the kubeconfig option nor K8S_AUTH_KUBECONFIG is set, and {0} {1}. Set "
            "K8S_AUTH_KUBECONFIG to the cluster's kubeconfig; nothing was changed.".format(
                ("KUBECONFIG names " + ", ".join(candidates)) if listed else candidates[0],
                "which do not exist" if listed else "does not exist"))
