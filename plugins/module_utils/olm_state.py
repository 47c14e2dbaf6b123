# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Decisions of the olm_operator module, as plain functions over the objects OLM serves.

PRIVATE to this collection. Nothing here talks to a cluster: inputs are dicts as the API returns
them (CatalogSource, PackageManifest, OperatorGroup, Subscription, InstallPlan,
ClusterServiceVersion), outputs are definitions to apply, verdicts and one-line descriptions.
"""

from __future__ import annotations

MARKETPLACE = "openshift-marketplace"
MANAGED_BY = {"app.kubernetes.io/managed-by": "confidential.gpu"}

# Where each operator belongs (operators.md §2): its catalog, its own namespace and OperatorGroup.
PACKAGES = {
    "nfd": {"source": "redhat-operators", "namespace": "openshift-nfd", "operator_group": "openshift-nfd"},
    "gpu-operator-certified": {"source": "certified-operators", "namespace": "nvidia-gpu-operator",
                               "operator_group": "nvidia-gpu-operator-group"},
    "sandboxed-containers-operator": {"source": "redhat-operators", "namespace": "openshift-sandboxed-containers-operator",
                                      "operator_group": "openshift-sandboxed-containers-operator"},
    "trustee-operator": {"source": "redhat-operators", "namespace": "trustee-operator-system",
                         "operator_group": "trustee-operator-group"},
}

# Subscription conditions after which OLM will not get further on its own (operator-framework-olm
# release-4.21, catalog/operator.go syncResolvingNamespace): ConstraintsNotSatisfiable is not retried,
# a Failed InstallPlan is never synced again, a failed bundle unpack waits for a periodic resync.
# ErrorPreventedResolution is retried and CatalogSourcesUnhealthy is true for ANY unhealthy catalog in
# the namespace or in openshift-marketplace, so neither of those ends a run.
FATAL_CONDITIONS = {"ResolutionFailed": ("ConstraintsNotSatisfiable",), "InstallPlanFailed": None,
                    "BundleUnpackFailed": None}

# CSV reasons OLM does not recover from by itself (olm/operator.go transitionCSVState): NoRetry is
# never synced again; the OperatorGroup ones wait for someone to fix the OperatorGroups. Any other
# Failed CSV is retried: back to Succeeded when its deployments become healthy, or Pending to reinstall.
TERMINAL_CSV_REASONS = ("InstallComponentFailedNoRetry", "NoOperatorGroup", "TooManyOperatorGroups",
                        "UnsupportedOperatorGroup")
OPERATOR_GROUP_REASONS = TERMINAL_CSV_REASONS[1:]


class OlmError(Exception):
    """A decision that ends the module run: the message says what is wrong and what exists."""


def defaults(package):
    """Catalog, namespace and OperatorGroup name for a package (the four known ones), else {}."""
    return dict(PACKAGES.get(package, {}))


def operator_label(package, namespace):
    """The label OLM puts on a package's CSVs and InstallPlans (name part cut to 63 characters)."""
    return "operators.coreos.com/" + "{0}.{1}".format(package, namespace)[:63].rstrip(".-_")


def normalize_version(version):
    text = str(version or "").strip()
    return text[1:] if text[:1] in ("v", "V") else text


# -- catalog and package ---------------------------------------------------------------------------


def catalog_state(catalog):
    return (((catalog or {}).get("status") or {}).get("connectionState") or {}).get("lastObservedState")


def check_catalog(name, namespace, catalog, catalogs):
    """Raise unless the CatalogSource exists and is READY; the message lists the ready ones."""
    ready = sorted(c["metadata"]["name"] for c in catalogs if catalog_state(c) == "READY")
    listing = "ready catalog sources in {0}: {1}".format(namespace, ", ".join(ready) if ready else "none")
    if catalog is None:
        raise OlmError("CatalogSource {0}/{1} does not exist; {2}".format(namespace, name, listing))
    state = catalog_state(catalog)
    if state != "READY":
        raise OlmError("CatalogSource {0}/{1} is {2}, not READY: OLM cannot resolve from it; {3}. Check the catalog "
                       "pod in {0} and the cluster's pull access to its index image ({4})".format(
                           namespace, name, state or "without a connection state", listing,
                           (catalog.get("spec") or {}).get("image", "no image")))


def channel_entries(manifest, channel):
    """CSV entries of a channel, oldest first (PackageManifests list them newest first)."""
    for item in ((manifest or {}).get("status") or {}).get("channels") or []:
        if item.get("name") == channel:
            return [{"name": e.get("name"), "version": e.get("version")} for e in reversed(item.get("entries") or [])]
    return None


def manifest_selector(source, source_namespace):
    """Label selector of the PackageManifests of one catalog.

    The packageserver answers a GET by name with the first package of that name from ANY catalog
    it serves in the namespace or the global one (operator-framework-olm release-4.21,
    pkg/package-server/provider/registry.go Get), so the package of a given catalog is found by
    listing with the ``catalog``/``catalog-namespace`` labels it puts on each manifest.
    """
    return "catalog={0},catalog-namespace={1}".format(source, source_namespace)


def manifest_in_catalog(manifests, package, source, source_namespace):
    """The PackageManifest of ``package`` served by catalog ``source_namespace/source``, or None."""
    for item in manifests:
        status = item.get("status") or {}
        if item["metadata"]["name"] == package and status.get("catalogSource") == source and \
                status.get("catalogSourceNamespace", source_namespace) == source_namespace:
            return item
    return None


def resolve_target(manifest, package, source, manifests_in_catalog=(), channel=None, version=None, csv=None,
                   source_namespace=None):
    """The channel and CSV to install: ``{channel, csv, version, entries}``.

    Raises :class:`OlmError` naming what exists when the package, the channel or the version
    is not in the catalog.
    """
    status = (manifest or {}).get("status") or {}
    if manifest is None or status.get("catalogSource") != source or (
            source_namespace and status.get("catalogSourceNamespace", source_namespace) != source_namespace):
        names = sorted(m["metadata"]["name"] for m in manifests_in_catalog)
        raise OlmError("package {0} is not in catalog {1}{2}; it has: {3}".format(
            package, source, " of namespace " + source_namespace if source_namespace not in (None, MARKETPLACE) else "",
            ", ".join(names) if names else "no packages"))
    status = manifest.get("status") or {}
    channels = [c.get("name") for c in status.get("channels") or []]
    channel = channel or status.get("defaultChannel")
    entries = channel_entries(manifest, channel)
    if entries is None:
        raise OlmError("package {0} has no channel {1}; channels: {2} (default {3})".format(
            package, channel, ", ".join(channels), status.get("defaultChannel")))
    wanted = None
    if csv:
        wanted = next((e for e in entries if e["name"] == csv), None)
        asked = "CSV " + csv
    elif version:
        want = normalize_version(version)
        wanted = next((e for e in entries if normalize_version(e["version"]) == want), None)
        asked = "version " + want
    else:
        wanted = entries[-1] if entries else None
        asked = "any version"
    if wanted is None:
        elsewhere = sorted(
            c.get("name") for c in status.get("channels") or []
            if any((csv and e.get("name") == csv) or (version and normalize_version(e.get("version")) == normalize_version(version))
                   for e in c.get("entries") or []))
        raise OlmError("package {0} channel {1} has no {2}; it has: {3}{4}".format(
            package, channel, asked, ", ".join("{0} ({1})".format(e["version"], e["name"]) for e in reversed(entries)),
            "; channels that have it: " + ", ".join(elsewhere) if elsewhere else ""))
    return {"channel": channel, "csv": wanted["name"], "version": wanted["version"], "entries": entries}


# -- OperatorGroup and Subscription ----------------------------------------------------------------


def foreign_operator_groups(groups, own_name):
    """OperatorGroups in the namespace that are not the one this module manages."""
    return sorted(g["metadata"]["name"] for g in groups if g["metadata"]["name"] != own_name)


def operator_group_definition(name, namespace):
    return {
        "apiVersion": "operators.coreos.com/v1", "kind": "OperatorGroup",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {"targetNamespaces": [namespace], "upgradeStrategy": "Default"},
    }


def namespace_definition(namespace, created=False):
    """The operator's namespace; one this run creates carries the label that tells a teardown it is ours to delete."""
    meta = {"name": namespace}
    if created:
        meta["labels"] = dict(MANAGED_BY)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def subscription_definition(name, namespace, package, source, source_namespace, channel, csv, approval):
    return {
        "apiVersion": "operators.coreos.com/v1alpha1", "kind": "Subscription",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "spec": {"name": package, "source": source, "sourceNamespace": source_namespace, "channel": channel,
                 "installPlanApproval": approval, "startingCSV": csv},
    }


def contains(existing, desired):
    """True when every field of ``desired`` is already in ``existing`` (so applying it changes nothing)."""
    if isinstance(desired, dict):
        if not isinstance(existing, dict):
            return False
        return all(contains(existing.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(existing, list) and len(existing) == len(desired) and all(
            contains(e, d) for e, d in zip(existing, desired))
    return existing == desired


def subscription_conflict(existing, package, source):
    """A Subscription of the same name that subscribes something else cannot be taken over."""
    spec = (existing or {}).get("spec") or {}
    if existing and (spec.get("name") != package or spec.get("source") != source):
        return "Subscription {0}/{1} exists for package {2} from {3}, not {4} from {5}".format(
            existing["metadata"]["namespace"], existing["metadata"]["name"], spec.get("name"), spec.get("source"),
            package, source)
    return None


def fatal_condition(subscription):
    """``(type, text)`` of a condition after which OLM will not get further by itself, or None."""
    for condition in ((subscription or {}).get("status") or {}).get("conditions") or []:
        ctype = condition.get("type")
        if ctype not in FATAL_CONDITIONS or condition.get("status") != "True":
            continue
        reasons = FATAL_CONDITIONS[ctype]
        if reasons is None or condition.get("reason") in reasons:
            return ctype, "{0}: {1}{2}".format(
                ctype, condition.get("reason") or "True", ": " + condition["message"] if condition.get("message") else "")
    return None


def recovery_steps(namespace, subscription, csvs, plans):
    """The documented recovery of a failing Subscription, in its order, as one sentence.

    OpenShift docs "Refreshing failing subscriptions" (Operators > troubleshooting): delete the
    Subscription first (else OLM recreates what is deleted next), then the CSV and the InstallPlans,
    then create the Subscription again. Deleting only the Subscription leaves a CSV that no new
    Subscription may adopt.
    """
    parts = ["delete Subscription {0}/{1}".format(namespace, subscription)]
    rest = []
    if csvs:
        rest.append("CSV " + ", ".join(sorted(csvs)))
    if plans:
        rest.append("InstallPlan " + ", ".join(sorted(plans)))
    if rest:
        parts.append("then " + " and ".join(rest))
    parts.append("then create the Subscription again (never only the Subscription)")
    return ", ".join(parts)


def describe_subscription(subscription):
    if subscription is None:
        return "Subscription not found"
    status = subscription.get("status") or {}
    parts = ["state {0}".format(status.get("state") or "(none)")]
    for key in ("installedCSV", "currentCSV"):
        if status.get(key):
            parts.append("{0} {1}".format(key, status[key]))
    if status.get("installPlanRef"):
        parts.append("InstallPlan {0}".format(status["installPlanRef"].get("name")))
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True":
            parts.append("{0}={1}{2}".format(condition.get("type"), condition.get("reason") or "True",
                                             ": " + condition["message"] if condition.get("message") else ""))
    return ", ".join(parts)


# -- upgrades and InstallPlans ------------------------------------------------------------------------


def steps_to(entries, installed, target):
    """CSVs OLM may offer on the way from ``installed`` to ``target`` (target included), oldest first.

    OLM walks the channel's replaces chain (one InstallPlan per step), or jumps ahead where a
    CSV skips its predecessors; any of these steps is ours to approve, nothing past the target.
    """
    names = [e["name"] for e in entries]
    if target not in names:
        raise OlmError("{0} is not in the channel".format(target))
    end = names.index(target)
    if installed is None or installed not in names:
        return [target] if installed is None else names[: end + 1]
    start = names.index(installed)
    if start > end:
        raise OlmError("installed {0} is newer than the pinned {1}: OLM does not downgrade; remove the operator "
                       "(state=absent) and install the older version, or pin {0}".format(installed, target))
    return names[start + 1: end + 1]


# olm.skipRange as OLM reads it: github.com/blang/semver/v4 v4.0.0 ``ParseRange`` (range.go) over the
# installed CSV's version read with ``ParseTolerant`` (semver.go); operator-lifecycle-manager
# pkg/controller/registry/resolver/cache/operators.go NewOperatorFromBundle keeps no range when the
# text does not parse, and predicates.go SkipRangeIncludesPredicate is then false. A port, quirks
# included (a space after '>', '<' or '=' does not split; a one-character word is dropped; any word
# with an 'x' is a wildcard), judged pair by pair by tests/unit/test_skiprange_differential.py.

_DIGITS = "0123456789"
_ALPHANUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-" + _DIGITS
_UINT64 = 2 ** 64


class _SemverError(ValueError):
    pass


def _only(text, allowed):
    return all(c in allowed for c in text)


def _number(text, what):
    if not _only(text, _DIGITS) or text == "" or (len(text) > 1 and text[0] == "0") or int(text) >= _UINT64:
        raise _SemverError("bad {0} number {1!r}".format(what, text))
    return int(text)


def _semver_parse(text):
    """blang ``Parse``: strict MAJOR.MINOR.PATCH[-PRE][+BUILD]; ``(major, minor, patch, pre)``."""
    parts = text.split(".", 2)
    if len(parts) != 3:
        raise _SemverError("no Major.Minor.Patch in {0!r}".format(text))
    patch, build = parts[2], None
    if "+" in patch:
        patch, build = patch.split("+", 1)
    pre = []
    if "-" in patch:
        patch, rest = patch.split("-", 1)
        for ident in rest.split("."):
            if ident and _only(ident, _DIGITS):
                pre.append((0, _number(ident, "prerelease"), ""))
            elif ident and _only(ident, _ALPHANUM):
                pre.append((1, 0, ident))
            else:
                raise _SemverError("bad prerelease {0!r}".format(ident))
    if build is not None and any(not b or not _only(b, _ALPHANUM) for b in build.split(".")):
        raise _SemverError("bad build metadata {0!r}".format(build))
    return (_number(parts[0], "major"), _number(parts[1], "minor"), _number(patch, "patch"), pre)


def _semver_tolerant(text):
    """blang ``ParseTolerant``: spaces and one 'v' off, leading zeros off, '4.21' is 4.21.0."""
    parts = text.strip()
    parts = (parts[1:] if parts.startswith("v") else parts).split(".", 2)
    for i, part in enumerate(parts):
        if len(part) > 1:
            part = part.lstrip("0")
            parts[i] = part if part and part[0] in _DIGITS else "0" + part
    if len(parts) < 3:
        if "+" in parts[-1] or "-" in parts[-1]:
            raise _SemverError("a short version cannot carry prerelease or build metadata")
        parts += ["0"] * (3 - len(parts))
    return _semver_parse(".".join(parts))


def _semver_compare(a, b):
    if a[:3] != b[:3]:
        return -1 if a[:3] < b[:3] else 1
    if not a[3] or not b[3]:
        return (not a[3]) - (not b[3])
    # Identifiers as (0, number, "") or (1, 0, text): numbers before words, then by value, then
    # the longer list wins when one is a prefix of the other, as tuples and lists compare.
    return (a[3] > b[3]) - (a[3] < b[3])


_COMPARE = {"": lambda c: c == 0, "=": lambda c: c == 0, "==": lambda c: c == 0, "!": lambda c: c != 0,
            "!=": lambda c: c != 0, ">": lambda c: c > 0, ">=": lambda c: c >= 0, "<": lambda c: c < 0,
            "<=": lambda c: c <= 0}


def _split_words(text):
    """blang ``splitAndTrim``: split at spaces, except after '>', '<' or '='; words of one byte dropped."""
    words, last, last_char = [], 0, ""
    for i, char in enumerate(text):
        if char == " " and last_char not in (">", "<", "="):
            if len(text[last:i].encode("utf-8")) > 1:
                words.append(text[last:i])
            last = i + 1
        elif char != " ":
            last_char = char
    if len(text[last:].encode("utf-8")) > 1:
        words.append(text[last:])
    return [w.replace(" ", "") for w in words]


def _split_comparator(word):
    """blang ``splitComparatorVersion``: the operator is what comes before the first digit."""
    at = next((i for i, c in enumerate(word) if c.isdecimal()), None)
    if at is None:
        raise _SemverError("no version in {0!r}".format(word))
    return word[:at].strip(), word[at:]


def _go_atoi_plus_one(text):
    sign = text[:1] if text[:1] in ("+", "-") else ""
    digits = text[len(sign):]
    if not digits or not _only(digits, _DIGITS) or not -2 ** 63 <= int(sign + digits) < 2 ** 63:
        return None
    number = int(sign + digits)
    return str(number + 1 if number < 2 ** 63 - 1 else -2 ** 63)


def _expand_wildcard(word):
    """blang ``expandWildcardVersion`` for one word holding an 'x': the words it stands for."""
    op, version = _split_comparator(word)
    parts = version.split(".")
    kind = len(parts) if parts[-1] == "x" and len(parts) <= 3 else 0
    flat = version.replace(".x.x", ".x", 1).replace(".x", ".0", 1)
    if len(flat.split(".")) == 2:
        flat += ".0"
    lead, result, increment = [], "", False
    if op in (">", ">=", "<", "<="):
        result, increment = {">": (">=", True), ">=": (">=", False), "<": ("<", False), "<=": ("<", True)}[op]
    elif op in ("", "=", "=="):
        lead, result, increment = [">=" + flat], "<", True
    elif op in ("!=", "!"):
        lead, result, increment = ["<" + flat], ">=", True
    bumped = flat
    if increment:
        bumped, pieces = "", flat.split(".")
        at = {3: 1, 2: 0}.get(kind)
        if at is not None:
            plus_one = _go_atoi_plus_one(pieces[at])
            if plus_one is not None:
                bumped = ".".join(pieces[:at] + [plus_one] + pieces[at + 1:])
    return lead + [result + bumped]


def _parse_skip_range(text):
    """blang ``ParseRange``: a list of alternatives, each a list of ``(compare, version)``."""
    words = _split_words(text)
    groups, last = [], 0
    for i, word in enumerate(words):
        if word == "||":
            if i == 0:
                raise _SemverError("first element in range is '||'")
            groups.append(words[last:i])
            last = i + 1
    if last == len(words):
        raise _SemverError("last element in range is '||'")
    groups.append(words[last:])
    parsed = []
    for group in groups:
        expanded = [w for word in group for w in (_expand_wildcard(word) if "x" in word else [word])]
        alternative = []
        for word in expanded:
            op, version = _split_comparator(word)
            if op not in _COMPARE:
                raise _SemverError("bad comparator {0!r}".format(op))
            alternative.append((_COMPARE[op], _semver_parse(version)))
        parsed.append(alternative)
    return parsed


def in_skip_range(version, expression):
    """Whether OLM puts ``version`` in the ``olm.skipRange`` ``expression`` (False when either does not parse).

    The collection refuses a pin (skip_range_jump) only where OLM itself would jump past it, so this
    must be OLM's own reading: '4.21.0-202511121510' (an OpenShift build) is below 4.21.0, a range with
    '4.21' or '||' without spaces does not parse and includes nothing.
    """
    try:
        ranges = _parse_skip_range(str(expression or ""))
        have = _semver_tolerant(str(version or ""))
    except _SemverError:
        return False
    # An empty alternative ('a || || b') is a nil function in Go (a panic when reached); none here.
    return any(alternative and all(test(_semver_compare(have, want)) for test, want in alternative)
               for alternative in ranges)


def channel_head(manifest, channel):
    """``(csv, version, skipRange)`` of a channel's head as the PackageManifest describes it, or None."""
    for item in ((manifest or {}).get("status") or {}).get("channels") or []:
        if item.get("name") == channel:
            desc = item.get("currentCSVDesc") or {}
            return item.get("currentCSV"), desc.get("version"), (desc.get("annotations") or {}).get("olm.skipRange", "")
    return None


def package_csvs(manifest):
    """Every CSV name the PackageManifest lists, in any channel."""
    return {e.get("name") for c in ((manifest or {}).get("status") or {}).get("channels") or []
            for e in c.get("entries") or []}


def version_of(manifest, csv):
    """The version the PackageManifest lists for a CSV name (any channel), or None."""
    for item in ((manifest or {}).get("status") or {}).get("channels") or []:
        for entry in item.get("entries") or []:
            if entry.get("name") == csv:
                return entry.get("version")
    return None


def skip_range_jump(manifest, channel, installed, target):
    """Refusal text when OLM would upgrade ``installed`` straight past the pinned ``target``, else None.

    OLM's resolver offers, of the CSVs that replace the installed one, list it in ``skips`` or
    include its version in their ``olm.skipRange``, the one nearest the channel head
    (registry/resolver/resolver.go getSubscriptionVariables). When the head's skipRange includes the
    installed version, no InstallPlan for an older CSV of that channel is ever offered.
    """
    head = channel_head(manifest, channel)
    version = version_of(manifest, installed)
    if not head or not installed or head[0] in (target, installed) or not in_skip_range(version, head[2]):
        return None
    others = sorted(c.get("name") for c in ((manifest or {}).get("status") or {}).get("channels") or []
                    if c.get("currentCSV") == target)
    return ("OLM would upgrade {0} straight to {1}, the head of channel {2}: its olm.skipRange '{3}' includes {4}, so "
            "the pinned {5} cannot be reached by upgrade. Pin {6}{7}".format(
                installed, head[0], channel, head[2], version, target, head[1] or head[0],
                ", or use channel {0} whose head is {1}".format(" or ".join(others), target) if others else ""))


def next_offer(manifest, channel, installed, steps):
    """The CSV OLM will offer next on the way along ``steps``: the channel head when its skipRange covers the installed."""
    head = channel_head(manifest, channel)
    if installed and head and head[0] in steps and in_skip_range(version_of(manifest, installed), head[2]):
        return head[0]
    return steps[0] if steps else None


def stale_plan(plan, package_csvs, entries, installed, target):
    """True for an unapproved InstallPlan that OLM resolved for an earlier spec of this Subscription.

    While a Subscription is UpgradePending with an InstallPlan, OLM does not resolve it again
    (catalog/operator.go nothingToUpdate), so after a channel or startingCSV change the plan made
    before stays; deleting it makes OLM resolve again (subscription/state.go InstallPlanNotFound).
    Only a plan that names nothing but this package's CSVs, none of them approved, qualifies: one
    that is not in the channel any more, or, while nothing is installed, not the pinned start.
    """
    spec = (plan or {}).get("spec") or {}
    csvs = list(spec.get("clusterServiceVersionNames") or [])
    if spec.get("approved") or not csvs or any(c not in package_csvs for c in csvs):
        return False
    names = {e["name"] for e in entries}
    return any(c not in names for c in csvs) or (installed is None and target not in csvs)


def operator_group_problem(namespace, groups):
    """Why OLM resolves nothing in the namespace (not exactly one OperatorGroup), or None.

    resolver.IsFailForwardEnabled ends the namespace's sync with "found N operatorGroups, expected 1"
    before any resolution: no InstallPlan and no condition on the Subscription say so.
    """
    if len(groups) == 1:
        return None
    names = sorted(g["metadata"]["name"] for g in groups)
    return ("namespace {0} has {1} OperatorGroups{2}: OLM resolves nothing there (no InstallPlan, no condition) until "
            "there is exactly one".format(namespace, len(groups), " (" + ", ".join(names) + ")" if names else ""))


def install_plan_verdict(plan, allowed):
    """Whether to approve an InstallPlan: ``{action, csvs, extra}``.

    ``action`` is ``approve`` when it names exactly one allowed CSV and nothing else and is not
    approved yet, ``approved`` when it already is, ``refuse`` otherwise (``extra`` names the CSVs
    that are not ours, e.g. another operator's upgrade resolved into the same plan).
    """
    spec = (plan or {}).get("spec") or {}
    csvs = list(spec.get("clusterServiceVersionNames") or [])
    ours = [c for c in csvs if c in allowed]
    extra = [c for c in csvs if c not in allowed]
    if len(ours) != 1 or extra:
        return {"action": "refuse", "csvs": csvs, "extra": extra}
    return {"action": "approved" if spec.get("approved") else "approve", "csvs": csvs, "extra": []}


def refusal_message(plan, verdict, allowed):
    name = "{0}/{1}".format(plan["metadata"].get("namespace"), plan["metadata"].get("name"))
    if verdict["extra"] and len(verdict["csvs"]) > len(verdict["extra"]):
        return ("InstallPlan {0} names {1}: besides {2} it would install {3}. Approving it would change another operator "
                "(OLM resolves all Subscriptions of a namespace into one plan); not approving. Give each operator its own "
                "namespace, or approve the plan by hand if all of it is wanted".format(
                    name, ", ".join(verdict["csvs"]), ", ".join(c for c in verdict["csvs"] if c in allowed),
                    ", ".join(verdict["extra"])))
    return ("InstallPlan {0} names {1}, not the pinned step ({2}); not approving. OLM offers a version past the pin: "
            "pin a channel whose head is the wanted version, or pin the offered one".format(
                name, ", ".join(verdict["csvs"]) or "no CSV", " or ".join(allowed)))


def csv_state(csv):
    """(``succeeded``|``failed``|``retrying``|``installing``|``absent``, one-line description) of a CSV.

    ``failed`` is a Failed CSV OLM will not recover by itself; ``retrying`` one it keeps working on.
    """
    if csv is None:
        return "absent", "CSV not created yet"
    status = csv.get("status") or {}
    phase = status.get("phase") or "(no phase yet)"
    text = "CSV {0} {1}{2}".format(csv["metadata"]["name"], phase,
                                   " ({0}: {1})".format(status.get("reason"), status.get("message"))
                                   if status.get("reason") else "")
    if phase == "Succeeded":
        return "succeeded", text
    if phase == "Failed":
        if status.get("reason") in TERMINAL_CSV_REASONS:
            return "failed", text
        return "retrying", text + ", OLM retries it"
    return "installing", text


def plans_naming(plans, csvs):
    """Names of the InstallPlans that name any of ``csvs``."""
    wanted = set(csvs)
    return sorted(p["metadata"]["name"] for p in plans
                  if wanted & set(((p.get("spec") or {}).get("clusterServiceVersionNames") or [])))


def owned_kinds(csv):
    """(api_version, kind) of the CRDs a CSV owns: the kinds of its operands."""
    found = []
    for crd in (((csv or {}).get("spec") or {}).get("customresourcedefinitions") or {}).get("owned") or []:
        group = crd.get("name", "").split(".", 1)[1] if "." in crd.get("name", "") else ""
        if group and crd.get("version") and crd.get("kind"):
            found.append(("{0}/{1}".format(group, crd["version"]), crd["kind"]))
    return found
