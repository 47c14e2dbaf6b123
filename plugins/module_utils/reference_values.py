# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Trustee reference values (RVPS): read, merge, pin initdata, write, and check completeness.

PRIVATE to this collection. Facts from shared/reference/attestation.md, section 3:

* veritas writes a ConfigMap whose ``reference-values.json`` key holds a JSON list of
  ``{"name", "expiration", "value"}``; trustee <= v0.13 used ``"hash-value": [{"alg", "value"}]``.
* Trustee operator >= v0.19 (Red Hat build 1.2) creates the key ``reference_value`` (``{}``) instead.
  Upstream's RVPS reads it with its ``LocalJson`` store (trustee
  ``deps/key-value-storage/src/local_json/mod.rs``, ``LocalJson::get``): a JSON object of strings,
  each the URL-safe, padded base64 of a JSON ``{"name", "expiration", "value"}`` record (the
  operator's own e2e ``05-rvps-reference-values.yaml``). A plain JSON object there fails to
  deserialise and every attestation errors, so that key is only ever written as ``kv-base64``.
  Plain objects are still *read* (a ConfigMap an older release wrote), so the next write repairs it.
* Policies test ``x in query_reference_value(name)``, so values are lists; the SNP
  configuration names are compared with ``==`` and must stay scalars.

The internal form everywhere is ``{name: {"value": list-or-scalar, "expiration": str}}``.
Malformed input raises :class:`ReferenceValueError` (a ValueError) naming the entry.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re

try:
    import yaml

    HAS_YAML = True
except ImportError:  # only veritas YAML needs it; JSON inputs still work
    HAS_YAML = False

from ansible_collections.confidential.gpu.plugins.module_utils.initdata import (
    InitdataError,
    digest as initdata_digest,
    tee_binding,
)

__all__ = [
    "DEFAULT_EXPIRATION",
    "EXPIRATION_FORMAT",
    "FORMATS",
    "KEY_KV",
    "KEY_LIST",
    "ReferenceValueError",
    "SCALAR_NAMES",
    "add_init_data",
    "check_completeness",
    "choose_format",
    "configmap_name",
    "data_key",
    "dump",
    "expired",
    "load",
    "merge",
    "merge_owned",
]

KEY_LIST = "reference-values.json"
KEY_KV = "reference_value"
FORMATS = ("list", "kv-base64")
EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# veritas' choice; our own values get this unless told otherwise.
DEFAULT_EXPIRATION = "2099-12-31T00:00:00Z"
# Compared with == by the default SNP policy; a list there would never match.
SCALAR_NAMES = frozenset({
    "snp_smt_enabled", "snp_tsme_enabled", "snp_guest_abi_major", "snp_guest_abi_minor",
    "snp_single_socket", "snp_smt_allowed",
})
# The first operator release that reads `reference_value` (trustee-operator 5915fea).
KV_SINCE = (0, 19, 0)


class ReferenceValueError(ValueError):
    """Malformed reference values or arguments; ``name`` is the entry concerned, if any."""

    def __init__(self, message, name=None):
        super().__init__(message)
        self.name = name


def configmap_name(trusteeconfig: str) -> str:
    """The RVPS ConfigMap the operator creates for a TrusteeConfig."""
    return "{0}-rvps-reference-values".format(trusteeconfig)


# --------------------------------------------------------------------------------------------
# expiration


def _expiration(value, name):
    if value is None:
        return DEFAULT_EXPIRATION
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.strftime(EXPIRATION_FORMAT)
    if not isinstance(value, str):
        raise ReferenceValueError("{0}: expiration must be a string like 2099-12-31T00:00:00Z".format(name), name)
    try:
        datetime.datetime.strptime(value, EXPIRATION_FORMAT)
    except ValueError:
        raise ReferenceValueError(
            "{0}: expiration {1!r} is not in the format Trustee reads (%Y-%m-%dT%H:%M:%SZ, e.g. "
            "2099-12-31T00:00:00Z)".format(name, value), name)
    return value


def expired(rvs: dict, now: datetime.datetime | None = None) -> list:
    """Names whose expiration is in the past; Trustee ignores those values."""
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if now.tzinfo is not None:
        now = now.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return sorted(n for n, e in rvs.items()
                  if datetime.datetime.strptime(e["expiration"], EXPIRATION_FORMAT) <= now)


# --------------------------------------------------------------------------------------------
# reading


def _entry(name, value, expiration):
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.\-]+$", name):
        raise ReferenceValueError("reference value name {0!r} is not a plain identifier".format(name), str(name))
    if name in SCALAR_NAMES:
        if isinstance(value, list):
            if len(value) != 1:
                raise ReferenceValueError(
                    "{0}: the default SNP policy compares it with ==, so it needs one scalar value, "
                    "got {1}".format(name, value), name)
            value = value[0]
    elif not isinstance(value, list):
        value = [value]
    return {"value": value, "expiration": _expiration(expiration, name)}


def _from_list(items, where):
    if not isinstance(items, list):
        raise ReferenceValueError("{0}: expected a JSON list of reference values".format(where))
    out = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "name" not in item:
            raise ReferenceValueError("{0}[{1}]: each entry needs a name".format(where, index))
        name = item["name"]
        if "value" in item:
            value = item["value"]
        elif "hash-value" in item:  # trustee <= v0.13
            hashes = item["hash-value"]
            if not isinstance(hashes, list) or not all(isinstance(h, dict) and "value" in h for h in hashes):
                raise ReferenceValueError("{0}: hash-value must be a list of {{alg, value}}".format(name), name)
            value = [h["value"] for h in hashes]
        else:
            raise ReferenceValueError("{0}: entry has neither value nor hash-value".format(name), name)
        entry = _entry(name, value, item.get("expiration"))
        out = merge(out, {name: entry})
    return out


def _maybe_record(text):
    """trustee HEAD's KV backend stores base64url(JSON(ReferenceValue)); anything else is a plain value."""
    if not text.startswith("eyJ"):  # base64 of '{"'
        return text
    try:
        record = json.loads(base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii")).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeError):
        return text
    return record if isinstance(record, dict) and "value" in record else text


def _from_kv(obj, where):
    out = {}
    for name, item in obj.items():
        if isinstance(item, str):
            item = _maybe_record(item)
        if isinstance(item, dict) and "value" in item:
            out = merge(out, {name: _entry(name, item["value"], item.get("expiration"))})
        else:
            # plain user file: {name: [values]} or {name: value}
            out = merge(out, {name: _entry(name, item, None)})
    return out


def _parse_text(text, where):
    try:
        return json.loads(text)
    except ValueError:
        pass
    if not HAS_YAML:
        raise ReferenceValueError("{0}: not JSON, and PyYAML is needed to read YAML".format(where))
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ReferenceValueError("{0}: neither JSON nor YAML ({1})".format(where, exc))


def load(source, where: str = "reference values") -> dict:
    """Reference values from any supported shape, as text or already parsed.

    Accepts a veritas ConfigMap (YAML or dict, key ``reference-values.json`` or
    ``reference_value``), the list format (new or ``hash-value``), the ``reference_value`` object
    (plain or base64url entries), or a plain user mapping ``{name: [values]}``.
    """
    obj = _parse_text(source, where) if isinstance(source, str) else source
    if isinstance(obj, dict) and obj.get("kind") == "ConfigMap":
        data = obj.get("data") or {}
        if KEY_LIST in data:
            return load(data[KEY_LIST], "{0} data[{1}]".format(where, KEY_LIST))
        if KEY_KV in data:
            return load(data[KEY_KV], "{0} data[{1}]".format(where, KEY_KV))
        if len(data) == 1:
            key = next(iter(data))
            return load(data[key], "{0} data[{1}]".format(where, key))
        raise ReferenceValueError("{0}: ConfigMap has no {1} or {2} key (keys: {3})".format(
            where, KEY_LIST, KEY_KV, ", ".join(sorted(data)) or "none"))
    if isinstance(obj, list):
        return _from_list(obj, where)
    if isinstance(obj, dict):
        return _from_kv(obj, where)
    if obj is None:
        return {}
    raise ReferenceValueError("{0}: expected a list, a mapping or a ConfigMap, got {1}".format(
        where, type(obj).__name__))


# --------------------------------------------------------------------------------------------
# combining


def merge(*sets: dict, expiration: str | None = None) -> dict:
    """Union of reference values per name, first-seen order kept, duplicates dropped.

    Each set is an internal mapping (see :func:`load`). The expiration of a merged name is the
    earliest of its inputs (a value is never trusted longer than its source said), or
    ``expiration`` for all when given.
    """
    out = {}
    for rvs in sets:
        for name, entry in (rvs or {}).items():
            entry = _entry(name, entry["value"], entry.get("expiration"))
            if name not in out:
                out[name] = {"value": entry["value"] if name in SCALAR_NAMES else list(entry["value"]),
                             "expiration": entry["expiration"]}
                continue
            mine = out[name]
            if name in SCALAR_NAMES:
                if mine["value"] != entry["value"]:
                    raise ReferenceValueError("{0}: conflicting values {1!r} and {2!r}; the SNP policy compares "
                                              "one value with ==".format(name, mine["value"], entry["value"]), name)
            else:
                for value in entry["value"]:
                    if value not in mine["value"]:
                        mine["value"].append(value)
            mine["expiration"] = min(mine["expiration"], entry["expiration"])
    if expiration is not None:
        stamp = _expiration(expiration, "expiration")
        for entry in out.values():
            entry["expiration"] = stamp
    return out


def add_init_data(rvs: dict, toml_texts, tee: str, expiration: str | None = None) -> dict:
    """``rvs`` plus an ``init_data`` entry: the hex TEE binding of each initdata document.

    The default policies do not read ``init_data``; it serves a custom pinning rule such as
    ``input.init_data in query_reference_value("init_data")`` (TDX: 48-byte MRCONFIGID, SNP:
    32-byte HOSTDATA, which is what the token's ``init_data`` claim shows).
    """
    if isinstance(toml_texts, str):
        toml_texts = [toml_texts]
    values = []
    for index, text in enumerate(toml_texts):
        try:
            values.append(tee_binding(initdata_digest(text), tee).hex())
        except InitdataError as exc:
            raise ReferenceValueError("init_data[{0}]: {1}".format(index, exc), "init_data")
    return merge(rvs, {"init_data": {"value": values, "expiration": expiration}})


def merge_owned(existing: dict, ours: dict, previously_owned=(), keep_unowned: bool = True):
    """What the ConfigMap should hold, and the names we now own.

    Names in ``ours`` replace what is there. Names we owned before and no longer supply are
    dropped. Everything else stays when ``keep_unowned`` (someone else put it there), and goes
    otherwise.
    """
    result = {}
    owned = set(ours)
    for name, entry in existing.items():
        if name in owned:
            continue
        if name in set(previously_owned):
            continue
        if keep_unowned:
            result[name] = entry
    result.update(merge(ours))
    return dict(sorted(result.items())), sorted(owned)


# --------------------------------------------------------------------------------------------
# writing


def _version_tuple(version):
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", str(version or ""))
    if not match:
        return None
    return tuple(int(x or 0) for x in match.groups())


def choose_format(existing_keys=(), trustee_version: str | None = None) -> tuple:
    """``(format, data key)``: the existing ConfigMap's key wins, then the Trustee operator version.

    The ``reference_value`` key always gets ``kv-base64`` (the only shape upstream's LocalJson store
    reads). Without a key or a version, the list format under ``reference-values.json`` (what veritas
    writes and the 1.1 operator reads).
    """
    keys = set(existing_keys or ())
    if KEY_KV in keys and KEY_LIST not in keys:
        return "kv-base64", KEY_KV
    if KEY_LIST in keys:
        return "list", KEY_LIST
    version = _version_tuple(trustee_version)
    if trustee_version is not None and version is None:
        raise ReferenceValueError("trustee_version: {0!r} is not a version like 0.19.0".format(trustee_version))
    if version is not None and version >= KV_SINCE:
        return "kv-base64", KEY_KV
    return "list", KEY_LIST


def data_key(fmt: str) -> str:
    """The ConfigMap key a format is written under."""
    return KEY_LIST if fmt == "list" else KEY_KV


def dump(rvs: dict, fmt: str = "list") -> str:
    """The ConfigMap value in ``fmt``: ``list`` (``reference-values.json``) or ``kv-base64`` (``reference_value``)."""
    if fmt == "kv":
        raise ReferenceValueError(
            "format: 'kv' (plain JSON objects under reference_value) is not written: upstream Trustee's LocalJson "
            "store reads that key only as base64 records and every attestation would fail; use kv-base64")
    if fmt not in FORMATS:
        raise ReferenceValueError("format: {0!r} is not one of {1}".format(fmt, ", ".join(FORMATS)))
    rvs = merge(rvs)
    names = sorted(rvs)
    if fmt == "list":
        body = [{"name": n, "expiration": rvs[n]["expiration"], "value": rvs[n]["value"]} for n in names]
    else:
        body = {}
        for n in names:
            record = {"version": "0.1.0", "name": n, "expiration": rvs[n]["expiration"], "value": rvs[n]["value"]}
            raw = json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")
            body[n] = base64.urlsafe_b64encode(raw).decode("ascii")
    return json.dumps(body, indent=2, sort_keys=(fmt != "list")) + "\n"


# --------------------------------------------------------------------------------------------
# completeness against the default policies (attestation.md 3.2-3.3)

# (submod, group, outcome if met, names it needs, hard-coded conditions the token must also meet)
_RULES = {
    "tdx": (
        ("cpu0", "executables", 3, ("rtmr_1", "rtmr_2", "tdvfkernel", "tdvfkernelparams"), ()),
        ("cpu0", "executables", 4, ("rtmr_1", "rtmr_2"), ()),
        ("cpu0", "hardware", 2, ("mr_td",),
         ("TDX quote header (tee_type 81000000, Intel vendor id)", "tcb_status == UpToDate",
          "collateral_expiration_status == 0")),
        ("cpu0", "configuration", 2, ("xfam",), ("td_attributes.debug == false",)),
    ),
    "snp": (
        ("cpu0", "executables", 3, ("snp_launch_measurement",), ()),
        ("cpu0", "hardware", 2, ("snp_bootloader", "snp_microcode", "snp_snp_svn", "snp_tee_svn"), ()),
        ("cpu0", "configuration", 2, ("snp_smt_enabled", "snp_tsme_enabled", "snp_guest_abi_major",
                                      "snp_guest_abi_minor", "snp_single_socket", "snp_smt_allowed"),
         ("policy_debug_allowed == false", "policy_migrate_ma == false")),
        ("cpu0", "configuration", 3, (), ("policy_debug_allowed == false", "policy_migrate_ma == false")),
    ),
    "gpu": (
        ("gpu0", "configuration", 2, ("allowed_vbios_versions", "allowed_driver_versions"),
         ("secboot", "dbgstat == disabled")),
        ("gpu0", "configuration", 3, (), ("secboot", "dbgstat == disabled")),
    ),
}
# Defaults when no rule of a group matches.
_DEFAULTS = {"executables": 33, "hardware": 97, "configuration": 36}
_DEFAULT_WHY = {
    33: "unrecognized run-time (executables 33)",
    97: "unrecognized hardware (hardware 97)",
    36: "configuration elements unavailable (configuration 36)",
}
# The TDX policy compares these with == against the whole stored value, so a list never matches.
_EQUALITY_NAMES = frozenset({"tdvfkernel", "tdvfkernelparams"})
# trustee <= v0.17 also required these for TDX hardware (dropped in 1ce3a420).
_TDX_LEGACY_HARDWARE = ("mr_seam", "tcb_svn")


def _tier(value):
    if -1 <= value <= 1:
        return "none"
    if -32 <= value < 32:
        return "affirming"
    if -96 <= value < 96:
        return "warning"
    return "contraindicated"


def check_completeness(rvs: dict, tee: str, gpu: bool = True, trustee_version: str | None = None,
                       now: datetime.datetime | None = None) -> dict:
    """Which AR4SI groups the default policies can affirm with these reference values.

    Returns ``{affirming, groups: [{submod, group, value, tier, missing, conditions, why}],
    expired, notes}``. ``value`` is the best outcome the values allow; ``conditions`` are checks
    on the token itself that reference values cannot satisfy (e.g. the TDX TCB must be
    UpToDate). ``affirming`` is True when no group is left outside the affirming tier.
    """
    if tee not in ("tdx", "snp"):
        raise ReferenceValueError("tee: {0!r} is not supported; valid values: snp, tdx".format(tee))
    gone = set(expired(rvs, now))
    usable = {n for n, e in rvs.items() if n not in gone and (e["value"] != [] and e["value"] is not None)}
    rules = list(_RULES[tee]) + (list(_RULES["gpu"]) if gpu else [])
    version = _version_tuple(trustee_version)
    legacy = version is not None and version < (0, 18, 0)
    groups = []
    notes = []
    seen = []
    for rule in rules:
        if rule[:2] not in seen:
            seen.append(rule[:2])
    for submod, group in seen:
        candidates = [r[2:] for r in rules if r[:2] == (submod, group)]
        best = None
        for value, names, conditions in candidates:
            needed = list(names)
            if tee == "tdx" and group == "hardware" and legacy:
                needed += list(_TDX_LEGACY_HARDWARE)
            missing = [n for n in needed if n not in usable]
            listed = [n for n in needed if n in usable and n in _EQUALITY_NAMES and isinstance(rvs[n]["value"], list)]
            if listed and not missing:
                if best is None:
                    best = (None, listed, conditions)
                continue
            if not missing:
                best = (value, [], conditions)
                break
            if best is None:
                best = (None, missing, conditions)
        value, missing, conditions = best
        if value is None:
            value = _DEFAULTS[group]
            expired_missing = [n for n in missing if n in gone]
            why = "{0}: missing reference value(s) {1}".format(_DEFAULT_WHY[value], ", ".join(missing))
            if expired_missing:
                why += " (expired: {0})".format(", ".join(expired_missing))
        else:
            why = None
        groups.append({"submod": submod, "group": group, "value": value, "tier": _tier(value),
                       "missing": missing, "conditions": list(conditions), "why": why})
    if gpu:
        groups.append({"submod": "gpu0", "group": "hardware", "value": 2, "tier": "affirming", "missing": [],
                       "conditions": ["NRAS (Remote) verifier claims: certificate chain good, report signature verified"],
                       "why": None})
        groups.append({"submod": "gpu0", "group": "executables", "value": 3, "tier": "affirming", "missing": [],
                       "conditions": ["NRAS (Remote) verifier claims: driver and VBIOS RIMs fetched and matched"],
                       "why": None})
        notes.append("GPU hardware and executables come from NRAS claims, not reference values: the Trustee "
                     "NVIDIA verifier must be type Remote, or gpu0 stays contraindicated (hardware 97).")
    if tee == "tdx" and any(n in usable and isinstance(rvs[n]["value"], list) for n in _EQUALITY_NAMES):
        notes.append("The default TDX policy compares tdvfkernel/tdvfkernelparams with ==, so list values "
                     "cannot match it: executables comes out 4 (still affirming) rather than 3.")
    if "init_data" in usable:
        notes.append("init_data is not read by the default policies; it only takes effect with a custom "
                     "rule such as input.init_data in query_reference_value(\"init_data\").")
    return {
        "affirming": all(g["tier"] in ("affirming",) for g in groups),
        "groups": groups,
        "expired": sorted(gone),
        "notes": notes,
    }
