"""The twin's RVPS: reference values read from storage exactly as upstream Trustee's built-in RVPS reads them.

:func:`load` is the reader the twin's attestation service uses. It follows trustee
78962cd416dcc8a32f9377e0066a28fe21420f69 (v0.19 and later) and, for a kbs-config.toml of the older
shape, trustee v0.14-v0.18:

* Where the values live. ``[attestation_service.rvps_config]`` is ``RvpsConfig::BuiltIn {extractors,
  storage_type}`` (``attestation-service/src/rvps/mod.rs``); ``storage_type`` defaults to the KBS's
  ``[storage_backend] storage_type`` (``kbs/src/config.rs`` ``KbsConfig.storage_backend``), itself
  ``Memory`` by default (``deps/key-value-storage/src/lib.rs`` ``KeyValueStorageType``). The store is
  the namespace ``reference_value`` (``rvps/src/lib.rs`` ``REFERENCE_VALUE_STORAGE_NAMESPACE``). With
  ``LocalJson`` it is ONE file, ``<file_dir_path>/reference_value`` (``local_json/mod.rs``
  ``LocalJson::new``: ``config.file_dir_path`` joined with the namespace), where ``file_dir_path``
  comes from ``[storage_backend.backends.local_json]`` and defaults to
  ``/opt/confidential-containers/storage/local_json`` (``FILE_DIR_PATH``). Without that table the
  KBS does not start ("Local JSON configuration is required", ``to_client_with_namespace``). The
  field is ``file_dir_path``: the operator's template writes ``dir_path``, which serde ignores
  (``#[serde(default)]``, no ``deny_unknown_fields``), so the default applies; it is the same path.
* The file. ``LocalJson::get`` deserialises the whole file as ``HashMap<String, String>`` and
  decodes the entry with ``base64 URL_SAFE`` (URL-safe alphabet, canonical ``=`` padding); a file of
  any other shape fails every query ("failed to deserialize the file"), a bad entry fails only its
  own query ("failed to base64 decode the content inside json").
* The record. ``Rvps::query_reference_value`` (``rvps/src/lib.rs``) deserialises the decoded bytes
  as ``ReferenceValue`` (``rvps/src/reference_value.rs``): ``version`` (default ``"0.1.0"``, never
  compared), ``name``, ``expiration`` (``%Y-%m-%dT%H:%M:%SZ``), ``value`` (any JSON), all but
  ``version`` required; the policy receives ``value``. The lookup is by the map key, not by ``name``.
* Expiry is not checked: trustee 85bd40b1 ("rvps: refactor QueryReferenceValue API", first in
  v0.16.0) removed the ``rv.expired()`` filter of ``get_digests``; an expired value is returned.
* v0.14-v0.18 (before 74c134f3 "rvps: replace storage impl with kv-storage crate", first in v0.19.0):
  ``[attestation_service.rvps_config.storage] type = "LocalJson"`` named one file (``file_path``,
  default ``/opt/confidential-containers/attestation-service/reference_values.json``) holding a
  JSON list of ``ReferenceValue`` (``rvps/src/storage/local_json/mod.rs``: ``Vec<ReferenceValue>``,
  first entry of the name wins). That is the shape of the twin's "1.1" layout.

Upstream reads the store at each ``query_reference_value`` call of the policy, so a malformed store
fails only an evaluation that queries. :func:`load` reads eagerly: it raises
:class:`ReferenceValueFileError` when every query would fail (the file as a whole), and lists
entries whose own query would fail in ``unreadable`` (``{name: error}``) for the caller to fail
on when the policy asks for them. The error texts are upstream's ``Display`` strings; serde's line
and column suffixes are left out.
"""

import base64
import binascii
import datetime
import json
import logging
import posixpath
import re

log = logging.getLogger("twin.kbs.rvps")


# key-value-storage local_json/mod.rs FILE_DIR_PATH; rvps lib.rs REFERENCE_VALUE_STORAGE_NAMESPACE.
LOCAL_JSON_DIR = "/opt/confidential-containers/storage/local_json"
NAMESPACE = "reference_value"
# rvps storage/local_json FILE_PATH before 74c134f3 (v0.14-v0.18).
LEGACY_LOCAL_JSON_FILE = "/opt/confidential-containers/attestation-service/reference_values.json"
EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# KeyValueStorageType variants and their serde aliases (deps/key-value-storage/src/lib.rs).
STORAGE_TYPES = {"Memory": "Memory", "memory": "Memory", "LocalJson": "LocalJson", "local_json": "LocalJson",
                 "LocalFs": "LocalFs", "local_fs": "LocalFs", "Postgres": "Postgres", "postgres": "Postgres",
                 "Redis": "Redis", "redis": "Redis"}


class ReferenceValueFileError(ValueError):
    """The reference value store cannot be read as upstream reads it; every query would fail."""


class ReferenceValues(dict):
    """``{name: value}`` of the readable entries; ``unreadable`` maps the others to upstream's error; ``path`` is the store read."""

    def __init__(self, values=(), unreadable=None, path=None):
        super().__init__(values)
        self.unreadable = dict(unreadable or {})
        self.path = path


def _unexpected(value):
    """serde's ``Unexpected`` wording for a JSON value (serde/src/de/mod.rs ``Unexpected`` Display)."""
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if value is None:
        return "null"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    return "sequence" if isinstance(value, list) else "map"


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")  # serde_json has no NaN/Infinity


def _json(raw):
    """serde_json's reading of bytes: strict JSON, UTF-8, no NaN; ValueError with the reason otherwise."""
    if isinstance(raw, str):
        raw = raw.encode()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid unicode code point ({exc.reason})")
    if not text.strip():
        raise ValueError("EOF while parsing a value")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ValueError(str(exc))


_URL_SAFE = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


def _url_safe_decode(text):
    """base64 ``general_purpose::URL_SAFE``: URL-safe alphabet, padding required and canonical, no stray bits.

    Error texts as the base64 crate's ``DecodeError`` Display (approximately).
    """
    for index, ch in enumerate(text):
        if not (ch.isascii() and (ch.isalnum() or ch in "-_=")):
            raise ValueError(f"Invalid symbol {ord(ch)}, offset {index}.")
    if not _URL_SAFE.match(text) or len(text) % 4:
        raise ValueError("Invalid padding")
    try:
        raw = base64.urlsafe_b64decode(text)
    except (binascii.Error, ValueError):
        raise ValueError("Invalid padding")
    if base64.urlsafe_b64encode(raw).decode() != text:
        last = len(text.rstrip("=")) - 1
        raise ValueError(f"Invalid last symbol {ord(text[last])}, offset {last}.")
    return raw


def _record(doc):
    """The ``value`` of a ``ReferenceValue`` (rvps/src/reference_value.rs), ValueError as serde derive words it."""
    if not isinstance(doc, dict):
        raise ValueError(f"invalid type: {_unexpected(doc)}, expected struct ReferenceValue")
    for field in ("name", "expiration", "value"):
        if field not in doc:
            raise ValueError(f"missing field `{field}`")
    for field in ("version", "name"):
        if field in doc and not isinstance(doc[field], str):
            raise ValueError(f"invalid type: {_unexpected(doc[field])}, expected a string")
    expiration = doc["expiration"]
    if expiration is None:
        raise ValueError("invalid length 0, expected <TIME>")  # primitive_date_time_from_str on null
    if not isinstance(expiration, str):
        raise ValueError(f"invalid type: {_unexpected(expiration)}, expected a borrowed string")
    try:
        datetime.datetime.strptime(expiration, EXPIRATION_FORMAT)
    except ValueError:
        raise ValueError("input contains invalid characters")  # chrono ParseError for a string off the format
    return doc["value"]


def _storage_type(name, where):
    if name is None:
        return None
    if name not in STORAGE_TYPES:
        raise ReferenceValueFileError(f"{where}: unknown variant `{name}`, expected one of "
                                      "`Memory`, `LocalJson`, `LocalFs`, `Postgres`, `Redis`")
    return STORAGE_TYPES[name]


def store(conf):
    """``(kind, path)`` of the reference value store a kbs-config.toml (parsed) names.

    ``kind`` is ``"kv"`` (LocalJson key-value file, v0.19+), ``"list"`` (LocalJson list file,
    v0.14-v0.18) or ``"memory"`` (values only arrive through the RVPS API; ``path`` None).
    """
    service = (conf or {}).get("attestation_service") or {}
    rvps = service.get("rvps_config") or {}
    kind = rvps.get("type", "BuiltIn") if rvps else "BuiltIn"
    if kind != "BuiltIn":
        raise ReferenceValueFileError(f"rvps_config type {kind!r}: only the built-in RVPS is modelled by the twin")
    backend = (conf or {}).get("storage_backend")
    legacy = isinstance(rvps.get("storage"), dict) and "storage_type" not in rvps
    if legacy:
        # v0.14-v0.18: rvps Config {storage: ReferenceValueStorageConfig (tag "type"), extractors}.
        # (The twin's 1.1 operator writes this table beside the newer storage_backend ones.)
        storage = rvps["storage"]
        if storage.get("type") == "LocalJson":
            return "list", storage.get("file_path", LEGACY_LOCAL_JSON_FILE)
        if storage.get("type") == "LocalFs":
            raise ReferenceValueFileError("rvps_config.storage type LocalFs (a sled database) is not modelled by the twin")
        raise ReferenceValueFileError(f"rvps_config.storage: unknown variant {storage.get('type')!r}, "
                                      "expected `LocalFs` or `LocalJson`")
    backend = backend or {}
    chosen = (_storage_type(rvps.get("storage_type"), "rvps_config.storage_type")
              or _storage_type(backend.get("storage_type"), "storage_backend.storage_type") or "Memory")
    if chosen == "Memory":
        return "memory", None
    if chosen != "LocalJson":
        raise ReferenceValueFileError(f"RVPS storage {chosen}: not modelled by the twin (LocalJson and Memory are)")
    local_json = (backend.get("backends") or {}).get("local_json")
    if not isinstance(local_json, dict):
        raise ReferenceValueFileError("initialize RVPS storage: invalid configuration: Local JSON configuration is required")
    return "kv", posixpath.join(local_json.get("file_dir_path", LOCAL_JSON_DIR), NAMESPACE)


def _load_kv(raw, path):
    try:
        doc = _json(raw)
    except ValueError as exc:
        raise ReferenceValueFileError(f"{path}: malformed value: failed to deserialize the file: {exc}")
    if not isinstance(doc, dict):
        raise ReferenceValueFileError(f"{path}: malformed value: failed to deserialize the file: "
                                      f"invalid type: {_unexpected(doc)}, expected a map")
    for entry in doc.values():
        if not isinstance(entry, str):
            raise ReferenceValueFileError(f"{path}: malformed value: failed to deserialize the file: "
                                          f"invalid type: {_unexpected(entry)}, expected a string")
    values, unreadable = {}, {}
    for key, entry in doc.items():
        try:
            decoded = _url_safe_decode(entry)
        except ValueError as exc:
            unreadable[key] = f"failed to get key `{key}`: failed to base64 decode the content inside json: {exc}"
            continue
        try:
            values[key] = _record(_json(decoded))
        except ValueError as exc:
            unreadable[key] = f"deserialize reference value: {exc}"
    return ReferenceValues(values, unreadable, path)


def _load_list(raw, path):
    try:
        doc = _json(raw)
        if not isinstance(doc, list):
            raise ValueError(f"invalid type: {_unexpected(doc)}, expected a sequence")
        values = {}
        for item in doc:
            value = _record(item)
            values.setdefault(item["name"], value)  # Iterator::find: the first of a name
    except ValueError as exc:
        raise ReferenceValueFileError(f"{path}: {exc}")
    return ReferenceValues(values, None, path)


def load(read, conf, say=log.info):
    """The reference values (``ReferenceValues``) of the store ``conf`` (a parsed kbs-config.toml) names.

    ``read(path)`` returns the bytes of a file of the pod (absolute path as in the config) and
    raises OSError when it is absent. An absent LocalJson file reads as empty: upstream creates it
    (``{}`` or ``[]``) when the store starts.
    """
    kind, path = store(conf)
    if kind == "memory":
        say("RVPS: the storage is Memory; reference values arrive only through the RVPS API, none are set")
        return ReferenceValues(path=None)
    try:
        raw = read(path)
    except OSError:
        say(f"RVPS: {path} is absent; it starts empty")
        return ReferenceValues(path=path)
    return _load_kv(raw, path) if kind == "kv" else _load_list(raw, path)
