"""The twin's RVPS: reads the reference values file in every shape Trustee versions have used.

* a JSON list of ``{"name", "expiration", "value"}`` (``reference-values.json``; trustee <= v0.13 used
  ``"hash-value": [{"alg", "value"}]`` instead of ``value``);
* a JSON object keyed by name, each entry ``{"expiration", "value"}`` or the base64url of that
  entry's JSON (``reference_value``, newer versions).

Expired values are dropped with a log line, as RVPS does; the result is ``{name: value}``, the
``data.reference`` document the policies read through ``query_reference_value``.
"""

import base64
import datetime
import json
import logging

log = logging.getLogger("twin.kbs.rvps")


class ReferenceValueFileError(ValueError):
    pass


def _expired(expiration, now):
    if not expiration:
        return False
    try:
        when = datetime.datetime.strptime(expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        raise ReferenceValueFileError(f"expiration {expiration!r} is not %Y-%m-%dT%H:%M:%SZ")
    return when <= now


def _entry_value(name, entry):
    if "value" in entry:
        return entry["value"]
    if "hash-value" in entry:
        return [h.get("value") for h in entry["hash-value"] or []]
    raise ReferenceValueFileError(f"reference value {name!r} has neither 'value' nor 'hash-value'")


def parse(text, say=log.warning, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    text = (text or "").strip()
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ReferenceValueFileError(f"not JSON: {exc}")
    entries = []
    if isinstance(doc, list):
        for index, item in enumerate(doc):
            if not isinstance(item, dict) or "name" not in item:
                raise ReferenceValueFileError(f"entry {index} is not an object with a name")
            entries.append((item["name"], item))
    elif isinstance(doc, dict):
        for name, item in doc.items():
            if isinstance(item, str):
                try:
                    item = json.loads(base64.urlsafe_b64decode(item + "=" * (-len(item) % 4)))
                except (ValueError, TypeError) as exc:
                    raise ReferenceValueFileError(f"{name!r}: a string entry must be base64url of JSON ({exc})")
            if not isinstance(item, dict):
                raise ReferenceValueFileError(f"{name!r}: expected an object with 'value'")
            entries.append((item.get("name", name), item))
    else:
        raise ReferenceValueFileError("expected a JSON list or object")
    values = {}
    for name, item in entries:
        if _expired(item.get("expiration"), now):
            say(f"reference value {name!r} expired on {item.get('expiration')}; ignored")
            continue
        values[name] = _entry_value(name, item)
    return values
