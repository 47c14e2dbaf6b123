"""The collection's initdata and the twin's (upstream's rule) agree on digests and TEE bindings.

``plugins/module_utils/initdata.py`` (what the collection renders and reports) and ``twin/initdata.py``
(what the twin's shim writes into MRCONFIGID/HOSTDATA and its verifier expects, from upstream's
source) are written independently; only tests may import both. Generated documents and digests
show a bug in either, and fixed vectors pin both to upstream's rule itself.
"""

import hashlib
import json

import pytest
from hypothesis import given, settings, strategies as st

from plugins.module_utils import initdata as collection
from twin import initdata as twin_initdata, profile as profiles, tee
from twin.kbs import verifier

# Text TOML basic strings can carry once JSON-escaped: no surrogates, no DEL (TOML forbids it raw).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x7f"), max_size=40)
KEYS = st.sampled_from(["aa.toml", "cdh.toml", "policy.rego", "extra", "é key", "a.b"])


@st.composite
def documents(draw):
    """initdata text in assorted byte layouts: key order, quoting, comments, trailing newline, CRLF."""
    algorithm = draw(st.sampled_from(sorted(twin_initdata.ALGORITHMS)))
    data = draw(st.dictionaries(KEYS, TEXT, max_size=4))
    head = [f'algorithm = "{algorithm}"', 'version = "0.1.0"']
    if draw(st.booleans()):
        head.reverse()
    lines = head + draw(st.sampled_from([[], ["# a comment"]])) + ["", "[data]"]
    lines += [f"{json.dumps(k, ensure_ascii=False)} = {json.dumps(v, ensure_ascii=False)}" for k, v in data.items()]
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(lines) + draw(st.sampled_from(["", newline, newline * 2]))


@settings(max_examples=300, deadline=None)
@given(documents())
def test_digests_agree_and_cover_the_exact_bytes(text):
    digest = twin_initdata.digest(text)
    assert digest == collection.digest(text)
    algorithm = collection.bindings(text)["algorithm"]
    assert digest == hashlib.new(algorithm, text.encode("utf-8")).digest()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100), st.sampled_from(["tdx", "snp"]))
def test_bindings_agree_for_any_digest_length(digest, tee_type):
    ours = twin_initdata.register_value(digest, tee_type)
    assert ours == collection.tee_binding(digest, tee_type)
    size = {"tdx": 48, "snp": 32}[tee_type]
    assert len(ours) == size and ours[:len(digest)] == digest[:size] and set(ours[len(digest):]) <= {0}


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["sha256", "sha384", "sha512"]), st.sampled_from(["restrictive", "allow-all"]),
       st.from_regex(r"\Ahttps://[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){1,3}(:[0-9]{2,5})?\Z"))
def test_what_the_collection_renders_binds_the_same(algorithm, policy, url):
    text = collection.render(url, policy=policy, algorithm=algorithm)
    reported = collection.bindings(text)
    assert twin_initdata.binding(text, "tdx").hex() == reported["tdx_mrconfigid"]
    assert twin_initdata.binding(text, "snp").hex() == reported["snp_hostdata"]
    assert twin_initdata.digest(twin_initdata.document(url, algorithm=algorithm))  # the twin's own default reads


def test_upstream_vectors():
    """sha256 pads 16 zero bytes into MRCONFIGID (the Red Hat article's TDX claim), sha512 is cut to 48/32."""
    text = 'algorithm = "sha256"\nversion = "0.1.0"\n\n[data]\n'
    raw = hashlib.sha256(text.encode()).digest()
    assert twin_initdata.binding(text, "tdx") == raw + b"\0" * 16
    assert twin_initdata.binding(text, "snp") == raw
    text512 = text.replace("sha256", "sha512")
    raw512 = hashlib.sha512(text512.encode()).digest()
    assert twin_initdata.binding(text512, "tdx") == raw512[:48] and twin_initdata.binding(text512, "snp") == raw512[:32]


@pytest.mark.parametrize("text, reason", [
    ('algorithm = "SHA384"\nversion = "0.1.0"\n[data]\n', "unknown variant `SHA384`"),
    ('algorithm = "sha384"\n[data]\n', "missing field `version`"),
    ('algorithm = "sha384"\nversion = "0.1.0"\n', "missing field `data`"),
    ('algorithm = "sha384"\nversion = "0.1.0"\n[data]\nx = 1\n', "table of strings"),
    ("algorithm = ", "parse TOML structured data"),
])
def test_what_upstream_refuses_the_collection_refuses_too(text, reason):
    with pytest.raises(twin_initdata.InitdataError, match=reason):
        twin_initdata.digest(text)
    with pytest.raises(collection.InitdataError):
        collection.validate(text)


def _vm(tee_type, toml):
    spec = profiles.load("default" if tee_type == "tdx" else "snp-rtx-pro-6000")
    node = next(n for n in spec["nodes"] if (n.get("tee") or {}).get("type") == tee_type)
    return tee.launch(node, spec["openshift"]["version"], initdata_toml=toml)


RUNTIME = {"nonce": "bm9uY2U=", "tee-pubkey": {"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}}


def _verify(tee_type, vm, sent):
    if tee_type == "tdx":
        return verifier.verify_tdx(vm.evidence(RUNTIME), RUNTIME, sent, lambda quote: "UpToDate")
    return verifier.verify_snp(vm.evidence(RUNTIME), RUNTIME, sent)


@pytest.mark.parametrize("tee_type, size, refusal", [("tdx", 48, "MRCONFIGID is different from that in TDX Quote"),
                                                     ("snp", 32, "Host Data Mismatch")])
def test_the_verifier_always_exports_init_data_and_checks_what_was_sent(tee_type, size, refusal):
    toml = collection.render("https://kbs.example.com")
    vm = _vm(tee_type, toml)
    assert _verify(tee_type, vm, toml)["init_data"] == twin_initdata.binding(toml, tee_type).hex()
    # Nothing sent: no check, the register is still exported.
    assert _verify(tee_type, vm, None)["init_data"] == twin_initdata.binding(toml, tee_type).hex()
    # A VM launched without initdata reports zeros.
    assert _verify(tee_type, _vm(tee_type, None), None)["init_data"] == "00" * size
    with pytest.raises(verifier.VerificationError, match=refusal):
        _verify(tee_type, vm, toml + "\n")
    with pytest.raises(verifier.VerificationError, match="parse init data"):
        _verify(tee_type, vm, "not = [toml")
