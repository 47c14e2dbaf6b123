"""initdata as upstream reads it: the digest over the raw TOML and its binding to the TEE registers.

The twin plays the host (the kata shim writing the register at launch), the guest (the attestation
agent sending the initdata) and Trustee (the attestation service checking the register). All three
must follow upstream's rule, not the collection's: the collection is what the twin judges, so this
module is written from the upstream sources below and a differential test
(``tests/unit/twin/test_initdata_binding.py``) compares it with the collection's ``module_utils/initdata.py``.

Upstream, read at the snapshots of ``shared/reference/attestation.md`` §0:

* Trustee ``attestation-service/src/lib.rs`` ``parse_init_data`` (78962cd4): the body of
  ``init-data {format: "toml"}`` is deserialised as ``Initdata {version: String, algorithm:
  HashAlgorithm, data: HashMap<String, String>}`` (serde: unknown keys ignored, all three required,
  ``version`` not compared with anything), then ``initdata.algorithm.digest(structured.into_bytes())``:
  the hash of the exact bytes received, never of a re-serialised document. A body that does not
  deserialise fails the attestation with ``parse init data`` / ``parse TOML structured data``.
* virtee/kbs-types ``src/hash_algorithm.rs`` ``HashAlgorithm``: ``#[serde(rename_all =
  "lowercase")]`` over Sha256/Sha384/Sha512, so exactly ``sha256``, ``sha384``, ``sha512``.
* Trustee ``deps/verifier/src/lib.rs`` ``regularize_data``: shorter than the register, pad with
  ``\\0`` at the end; longer, keep the first bytes. TDX (``deps/verifier/src/tdx/mod.rs``) compares
  ``regularize_data(digest, 48, "MRCONFIGID", "TDX")`` with ``quote.mr_config_id()``, SNP
  (``deps/verifier/src/snp/mod.rs``) ``regularize_data(digest, 32, "HOST_DATA", "SNP")`` with
  ``report.host_data``.
* The host side writes the same value: kata ``src/runtime/pkg/govmm/qemu/qemu.go``
  ``adjustProperLength`` (48 bytes for ``mrconfigid=``, 32 for ``host-data=``), and the guest's
  attestation agent checks it at start (guest-components ``attester/src/tdx/mod.rs``
  ``init_data.resize(TDX_REGISTER_LENGTH, 0)``, ``snp/mod.rs`` ``pad::<32>``).
"""

import hashlib
import tomllib

# kbs-types HashAlgorithm, serde names (rename_all = "lowercase").
ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
# The registers the digest is bound to: TDX MRCONFIGID, SNP HOSTDATA (trustee verifier regularize_data calls).
REGISTER_BYTES = {"tdx": 48, "snp": 32}
REGISTER_NAMES = {"tdx": "MRCONFIGID", "snp": "HOSTDATA"}


class InitdataError(ValueError):
    """The init-data body is not what the attestation service deserialises; the message is upstream's context."""


def _structured(toml_text):
    """The ``Initdata`` struct of trustee's attestation service, or InitdataError as serde would refuse it."""
    if not isinstance(toml_text, str):
        raise InitdataError(f"parse init data: init-data body must be text, got {type(toml_text).__name__}")
    try:
        doc = tomllib.loads(toml_text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise InitdataError(f"parse init data: parse TOML structured data: {exc}")
    for field in ("version", "algorithm", "data"):
        if field not in doc:
            raise InitdataError(f"parse init data: parse TOML structured data: missing field `{field}`")
    if not isinstance(doc["version"], str):
        raise InitdataError("parse init data: parse TOML structured data: invalid type for `version`, "
                            "expected a string")
    if doc["algorithm"] not in ALGORITHMS:
        raise InitdataError(f"parse init data: parse TOML structured data: unknown variant "
                            f"`{doc['algorithm']}`, expected one of `sha256`, `sha384`, `sha512`")
    data = doc["data"]
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InitdataError("parse init data: parse TOML structured data: `data` must be a table of strings")
    return doc


def digest(toml_text: str) -> bytes:
    """The initdata digest the attestation service computes: the named hash over the exact UTF-8 bytes."""
    doc = _structured(toml_text)
    return ALGORITHMS[doc["algorithm"]](toml_text.encode("utf-8")).digest()


def register_value(initdata_digest: bytes, tee: str) -> bytes:
    """What MRCONFIGID (tdx, 48 bytes) or HOSTDATA (snp, 32 bytes) holds for a digest: zero-padded or truncated at the end."""
    size = REGISTER_BYTES[tee]
    value = bytes(initdata_digest)[:size]
    return value + b"\0" * (size - len(value))


def binding(toml_text: str, tee: str) -> bytes:
    """The register value of initdata text on ``tee`` (what the shim writes, what the verifier expects)."""
    return register_value(digest(toml_text), tee)


def document(kbs_url: str, kbs_cert: str = None, algorithm: str = "sha384") -> str:
    """A minimal initdata a guest would carry to reach ``kbs_url`` (the twin client's default).

    Keys as the guest reads them: aa.toml ``[token_configs.kbs] url, cert`` (guest-components
    ``attestation-agent/src/config/kbs.rs``), cdh.toml ``[kbc] name, url, kbs_cert``.
    """
    if algorithm not in ALGORITHMS:
        raise InitdataError(f"algorithm {algorithm!r}: one of {', '.join(ALGORITHMS)}")

    def literal(value):
        return "'''\n" + value + "'''"

    cert = (kbs_cert or "").strip()
    aa = f'[token_configs]\n[token_configs.kbs]\nurl = "{kbs_url}"\n'
    cdh = f'socket = "unix:///run/confidential-containers/cdh.sock"\ncredentials = []\n\n[kbc]\n' \
          f'name = "cc_kbc"\nurl = "{kbs_url}"\n'
    if cert:
        aa += f'cert = """\n{cert}\n"""\n'
        cdh += f'kbs_cert = """\n{cert}\n"""\n'
    return (f'algorithm = "{algorithm}"\nversion = "0.1.0"\n\n[data]\n'
            f'"aa.toml" = {literal(aa)}\n\n"cdh.toml" = {literal(cdh)}\n')
