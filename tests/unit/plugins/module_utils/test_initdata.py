# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""initdata byte rules. Every expected digest, binding and annotation below was computed outside
the code under test (sha256sum/sha384sum/sha512sum, `gzip -c | base64 -w0`, or the Red Hat article)
and pasted here as a literal."""

from __future__ import annotations

import base64
import gzip
import hashlib
import pathlib
import tomllib

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import initdata
from ansible_collections.confidential.gpu.plugins.module_utils.initdata import InitdataError

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "initdata"


def doc(alg):
    return (
        'algorithm = "' + alg + '"\n'
        'version = "0.1.0"\n'
        "\n"
        "[data]\n"
        "\"aa.toml\" = '''\n"
        "[token_configs.kbs]\n"
        'url = "https://kbs.example.com"\n'
        "'''\n"
    )


# `sha256sum`, `sha384sum`, `sha512sum` of doc(alg) written to a file with printf.
SHA256_HEX = "b39fee7c1dd9f2e2c07beb7d9f1534c70c804a57a7ed54dbec54dcf6deb3b990"
SHA384_HEX = "8efe34a9d3f7356b870519452bb88a1914d34a270e5a6e95ad97ab1800634a82a8125a9c60bc575332f92d5c9593041a"
SHA512_HEX = ("2d80dbf06211336b57788f00c269db4cabec35e54c62b64ccb93f5082189c336"
              "1905920ff890f2679b5dccd6f52750cdba69e27f3218b10d011f80c180479354")
# The same sha384 document without its final newline (`head -c -1 | sha384sum`).
SHA384_NO_FINAL_NEWLINE_HEX = "322d08d7b417a40aaf062c6b7855fee62ff71094b5102e794a786558ec7489da520497857d2a9ee9f816eea1ea33a849"
# The sha384 document with CRLF line endings (`sed 's/$/\r/' | sha384sum`).
SHA384_CRLF_HEX = "c1dce0ad2d548b564e183bac20a98a00ebcb082d375e5fc3bf1cc56736d7f7038591afdf9fd6f1d6f98f04fe2520e5cd"

# GNU gzip 1.12 `gzip -c -n doc.toml | base64 -w0` (mtime 0, OS 3).
GNU_ANNOTATION = ("H4sIAAAAAAAAAxXLwQqDMAyA4XueQnLpLTq2wxjsSURGdJ0tto002fDxZ6/fz89plRot5O7ZoQa+3m8IP181Smk00IUGBBjfbDwBMpNJTng25"
                  "xyMJpsvr0XKJ65K26wTfGtqZzDb9dH3p5E/OO/J0yIZoX1/xEUYfXcAAAA=")
# `gzip -c -1 named.toml | base64 -w0`: file name and mtime in the header, fastest level.
GNU_NAMED_ANNOTATION = ("H4sICCV9k2UEA25hbWVkLnRvbWwAFcvBCoMwDIDhe55CcuktOrbDGOxJREZ0nS22jTTZ8PFnr9/Pz2mVGi3k7tmhBr7ebwg/XzVKaTTQ"
                        "hQYEGN9sPAEyk0lOeDbnHIwmmy+vRconrkrbrBN8a2pnMNv10fenkT8478nTIhmhfX/ERRh9dwAAAA==")
# `cat one.gz one.gz | base64 -w0`: two gzip members.
TWO_MEMBERS = ("H4sIAAAAAAAAAxXLwQqDMAyA4XueQnLpLTq2wxjsSURGdJ0tto002fDxZ6/fz89plRot5O7ZoQa+3m8IP181Smk00IUGBBjfbDwBMpNJT"
               "ng25xyMJpsvr0XKJ65K26wTfGtqZzDb9dH3p5E/OO/J0yIZoX1/xEUYfXcAAAAfiwgAAAAAAAADFcvBCoMwDIDhe55CcuktOrbDGOxJRE"
               "Z0nS22jTTZ8PFnr9/Pz2mVGi3k7tmhBr7ebwg/XzVKaTTQhQYEGN9sPAEyk0lOeDbnHIwmmy+vRconrkrbrBN8a2pnMNv10fenkT8478nT"
               "IhmhfX/ERRh9dwAAAA==")
# `head -c 30 one.gz | base64 -w0`: a truncated stream.
TRUNCATED = "H4sIAAAAAAAAAxXLwQqDMAyA4XueQnLpLTq2wxjs"
# `base64 -w0 doc.toml`: plain base64 of the TOML, no gzip.
PLAIN_BASE64 = ("YWxnb3JpdGhtID0gInNoYTM4NCIKdmVyc2lvbiA9ICIwLjEuMCIKCltkYXRhXQoiYWEudG9tbCIgPSAnJycKW3Rva2VuX2NvbmZpZ3Mua2Jz"
                "XQp1cmwgPSAiaHR0cHM6Ly9rYnMuZXhhbXBsZS5jb20iCicnJwo=")
# The Red Hat article's TDX EAR claim: a sha256 digest zero-padded to the 48-byte MRCONFIGID.
ARTICLE_INIT_DATA = "3e6191191bd85c162fdbec63c0153801a1129e565d6cfe3e851e51b0ddee080f00000000000000000000000000000000"


# -- digest -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg,expected", [("sha256", SHA256_HEX), ("sha384", SHA384_HEX), ("sha512", SHA512_HEX)])
def test_digest_uses_the_documents_own_algorithm(alg, expected):
    assert initdata.digest(doc(alg)).hex() == expected


def test_digest_matches_hashlib_on_the_literal_bytes():
    text = doc("sha384")
    assert initdata.digest(text) == hashlib.sha384(text.encode("utf-8")).digest()


def test_digest_hashes_exact_bytes_a_missing_final_newline_changes_it():
    assert initdata.digest(doc("sha384")[:-1]).hex() == SHA384_NO_FINAL_NEWLINE_HEX


def test_digest_does_not_normalise_crlf():
    assert initdata.digest(doc("sha384").replace("\n", "\r\n")).hex() == SHA384_CRLF_HEX


def test_digest_of_utf8_text_hashes_utf8_bytes():
    text = doc("sha256").replace("kbs.example.com", "kbs.example.com/caf\u00e9")
    assert initdata.digest(text) == hashlib.sha256(text.encode("utf-8")).digest()


@pytest.mark.parametrize("alg", ["SHA384", "sha-384", "sha3_384", "md5", "sm3", ""])
def test_digest_rejects_other_algorithm_names(alg):
    with pytest.raises(InitdataError, match="algorithm.*sha256, sha384, sha512") as err:
        initdata.digest(doc(alg))
    assert err.value.field == "algorithm"


def test_digest_rejects_a_missing_algorithm():
    with pytest.raises(InitdataError, match="algorithm: is missing"):
        initdata.digest('version = "0.1.0"\n')


@pytest.mark.parametrize("bad", ["version = ", "[data\n", "a = 'unterminated\n", "x = 1\rz = 2\n"])
def test_digest_rejects_text_that_is_not_toml(bad):
    with pytest.raises(InitdataError, match="not valid TOML"):
        initdata.digest(bad)


@pytest.mark.parametrize("bad", [None, b"bytes", 42])
def test_digest_rejects_non_text(bad):
    with pytest.raises(InitdataError, match="expected text"):
        initdata.digest(bad)


def test_digest_rejects_lone_surrogates():
    with pytest.raises(InitdataError, match="UTF-8"):
        initdata.digest(doc("sha384") + "# \ud800\n")


def test_digest_rejects_huge_input():
    with pytest.raises(InitdataError, match="larger than"):
        initdata.digest(doc("sha384") + "#" * (5 * 1024 * 1024))


# -- tee_binding ------------------------------------------------------------------------------


def test_tdx_binding_pads_a_sha256_digest_with_16_zero_bytes():
    assert initdata.tee_binding(bytes.fromhex(SHA256_HEX), "tdx").hex() == SHA256_HEX + "00" * 16


def test_tdx_binding_reproduces_the_red_hat_articles_claim():
    digest32 = bytes.fromhex(ARTICLE_INIT_DATA[:64])
    assert initdata.tee_binding(digest32, "tdx").hex() == ARTICLE_INIT_DATA


def test_tdx_binding_of_sha384_is_the_digest_itself():
    assert initdata.tee_binding(bytes.fromhex(SHA384_HEX), "tdx").hex() == SHA384_HEX


def test_tdx_binding_truncates_sha512_to_48_bytes():
    expected = "2d80dbf06211336b57788f00c269db4cabec35e54c62b64ccb93f5082189c3361905920ff890f2679b5dccd6f52750cd"
    assert initdata.tee_binding(bytes.fromhex(SHA512_HEX), "tdx").hex() == expected


def test_snp_binding_of_sha256_is_the_digest_itself():
    assert initdata.tee_binding(bytes.fromhex(SHA256_HEX), "snp").hex() == SHA256_HEX


def test_snp_binding_keeps_the_first_32_bytes():
    assert initdata.tee_binding(bytes.fromhex(SHA384_HEX), "snp").hex() == (
        "8efe34a9d3f7356b870519452bb88a1914d34a270e5a6e95ad97ab1800634a82")
    assert initdata.tee_binding(bytes.fromhex(SHA512_HEX), "snp").hex() == (
        "2d80dbf06211336b57788f00c269db4cabec35e54c62b64ccb93f5082189c336")


def test_binding_of_empty_digest_is_all_zero():
    assert initdata.tee_binding(b"", "tdx") == b"\x00" * 48
    assert initdata.tee_binding(b"", "snp") == b"\x00" * 32


@pytest.mark.parametrize("tee", ["sev", "cca", "se", "", None, "TDX-guest"])
def test_binding_rejects_unknown_tees(tee):
    with pytest.raises(InitdataError, match="tee.*snp, tdx") as err:
        initdata.tee_binding(b"\x01" * 32, tee)
    assert err.value.field == "tee"


def test_binding_rejects_a_hex_string_instead_of_bytes():
    with pytest.raises(InitdataError, match="digest: expected bytes"):
        initdata.tee_binding(SHA256_HEX, "tdx")


def test_bindings_reports_every_form():
    values = initdata.bindings(doc("sha256"))
    assert values["digest"] == SHA256_HEX
    assert values["tdx_mrconfigid"] == SHA256_HEX + "0" * 32
    assert values["snp_hostdata"] == SHA256_HEX
    assert base64.b64decode(values["tdx_mrconfigid_b64"]).hex() == SHA256_HEX + "0" * 32
    assert base64.b64decode(values["snp_hostdata_b64"]).hex() == SHA256_HEX


# -- annotation -------------------------------------------------------------------------------


def test_decode_accepts_gnu_gzip_and_gives_the_exact_document():
    text = initdata.decode_annotation(GNU_ANNOTATION)
    assert text == doc("sha384")
    assert initdata.digest(text).hex() == SHA384_HEX  # `base64 -d | gzip -dc | sha384sum`


def test_decode_accepts_a_header_with_file_name_and_mtime():
    assert initdata.decode_annotation(GNU_NAMED_ANNOTATION) == doc("sha384")


def test_encode_is_one_line_standard_base64_of_one_gzip_member():
    value = initdata.encode_annotation(doc("sha384"))
    assert "\n" not in value and "-" not in value and "_" not in value
    packed = base64.b64decode(value, validate=True)
    assert packed[:3] == b"\x1f\x8b\x08"
    assert packed[4:8] == b"\x00\x00\x00\x00"  # mtime 0: the same text always encodes the same way
    assert gzip.decompress(packed) == doc("sha384").encode("utf-8")
    assert initdata.decode_annotation(value) == doc("sha384")


def test_encode_gives_different_bytes_than_gnu_gzip_but_the_same_document():
    ours = initdata.encode_annotation(doc("sha384"))
    assert initdata.decode_annotation(ours) == initdata.decode_annotation(GNU_ANNOTATION)


def test_decode_rejects_plain_base64_of_the_toml_and_says_so():
    with pytest.raises(InitdataError, match="base64 of plain TOML.*gzip"):
        initdata.decode_annotation(PLAIN_BASE64)


def test_decode_rejects_base64_of_other_bytes():
    with pytest.raises(InitdataError, match="not a gzip stream"):
        initdata.decode_annotation("bm90IGd6aXAgYXQgYWxs")


def test_decode_rejects_a_truncated_stream():
    with pytest.raises(InitdataError, match="truncated gzip"):
        initdata.decode_annotation(TRUNCATED)


def test_decode_rejects_two_gzip_members():
    with pytest.raises(InitdataError, match="exactly one member"):
        initdata.decode_annotation(TWO_MEMBERS)


def test_decode_rejects_trailing_garbage_after_the_member():
    packed = base64.b64decode(GNU_ANNOTATION) + b"\x00junk"
    with pytest.raises(InitdataError, match="follow the first gzip member"):
        initdata.decode_annotation(base64.b64encode(packed).decode())


def test_decode_rejects_a_corrupt_crc():
    packed = bytearray(base64.b64decode(GNU_ANNOTATION))
    packed[-8] ^= 0xFF  # CRC32 of the trailer
    with pytest.raises(InitdataError, match="corrupt gzip"):
        initdata.decode_annotation(base64.b64encode(bytes(packed)).decode())


def test_decode_rejects_corrupt_deflate_data():
    packed = bytearray(base64.b64decode(GNU_ANNOTATION))
    packed[12:20] = b"\xff" * 8
    with pytest.raises(InitdataError, match="corrupt gzip|truncated"):
        initdata.decode_annotation(base64.b64encode(bytes(packed)).decode())


@pytest.mark.parametrize("value", [GNU_ANNOTATION.rstrip("="), GNU_ANNOTATION + "=", GNU_ANNOTATION[:-2] + "B="])
def test_decode_rejects_wrong_padding(value):
    with pytest.raises(InitdataError, match="base64"):
        initdata.decode_annotation(value)


def test_decode_rejects_the_url_safe_alphabet():
    value = GNU_ANNOTATION.replace("+", "-").replace("/", "_")
    with pytest.raises(InitdataError, match="URL-safe"):
        initdata.decode_annotation(value)


@pytest.mark.parametrize("sep", ["\n", "\r\n", " "])
def test_decode_rejects_wrapped_base64(sep):
    value = sep.join(GNU_ANNOTATION[i:i + 76] for i in range(0, len(GNU_ANNOTATION), 76))
    with pytest.raises(InitdataError, match="one line"):
        initdata.decode_annotation(value)


@pytest.mark.parametrize("value", ["", None, 5, b"H4sI"])
def test_decode_rejects_empty_and_non_text(value):
    with pytest.raises(InitdataError, match="annotation"):
        initdata.decode_annotation(value)


def test_decode_rejects_a_huge_value():
    with pytest.raises(InitdataError, match="Kubernetes allows"):
        initdata.decode_annotation("A" * (300 * 1024))


def test_decode_refuses_a_gzip_bomb():
    bomb = gzip.compress(b"a" * (8 * 1024 * 1024), mtime=0)
    with pytest.raises(InitdataError, match="inflates to more than"):
        initdata.decode_annotation(base64.b64encode(bomb).decode())


def test_decode_rejects_non_utf8_content():
    value = base64.b64encode(gzip.compress(b"\xff\xfe\x00", mtime=0)).decode()
    with pytest.raises(InitdataError, match="not UTF-8"):
        initdata.decode_annotation(value)


def test_encode_refuses_what_kubernetes_would_refuse():
    noise = base64.b64encode(b"".join(hashlib.sha512(str(i).encode()).digest() for i in range(5000))).decode()
    with pytest.raises(InitdataError, match="256|262144"):
        initdata.encode_annotation(doc("sha384") + "# " + noise + "\n")


# -- validate ---------------------------------------------------------------------------------


def test_validate_reads_a_good_document():
    info = initdata.validate(doc("sha384"))
    assert info["algorithm"] == "sha384"
    assert info["kbs_url"] == "https://kbs.example.com"
    assert info["data_keys"] == ["aa.toml"]
    assert any("cdh.toml" in w for w in info["warnings"])
    assert any("policy.rego" in w for w in info["warnings"])


@pytest.mark.parametrize("version", ['"0.2.0"', '"0.1"', "1", '"v0.1.0"'])
def test_validate_names_the_only_version(version):
    with pytest.raises(InitdataError, match='version.*"0.1.0"') as err:
        initdata.validate(doc("sha384").replace('"0.1.0"', version))
    assert err.value.field == "version"


def test_validate_requires_string_data_values():
    with pytest.raises(InitdataError, match='data."policy.rego": must be a string, got int'):
        initdata.validate(doc("sha384") + '"policy.rego" = 5\n')


def test_validate_requires_a_data_table():
    with pytest.raises(InitdataError, match="data: a \\[data\\] table"):
        initdata.validate('algorithm = "sha384"\nversion = "0.1.0"\ndata = "x"\n')


def test_validate_rejects_unknown_top_level_keys():
    with pytest.raises(InitdataError, match="unknown top-level key.*valid keys"):
        initdata.validate('extra = 1\n' + doc("sha384"))


def test_validate_rejects_aa_toml_that_is_not_toml():
    bad = doc("sha384").replace('url = "https://kbs.example.com"', "url = ")
    with pytest.raises(InitdataError, match='data."aa.toml": not valid TOML') as err:
        initdata.validate(bad)
    assert err.value.field == 'data."aa.toml"'


def test_validate_rejects_plain_http_without_opt_in():
    text = doc("sha384").replace("https://", "http://")
    with pytest.raises(InitdataError, match="plain http.*allow_insecure_http"):
        initdata.validate(text)
    assert initdata.validate(text, allow_insecure_http=True)["kbs_url"] == "http://kbs.example.com"


def test_validate_rejects_crlf_unless_allowed():
    text = doc("sha384").replace("\n", "\r\n")
    with pytest.raises(InitdataError, match="CRLF"):
        initdata.validate(text)
    assert initdata.validate(text, allow_crlf=True)["algorithm"] == "sha384"


def test_validate_catches_the_swapped_certificate_keys():
    text = doc("sha384").replace('url = "https://kbs.example.com"\n', 'url = "https://kbs.example.com"\nkbs_cert = "x"\n', 1)
    with pytest.raises(InitdataError, match='"cert", not "kbs_cert"'):
        initdata.validate(text)


# -- render -----------------------------------------------------------------------------------

PEM = ("-----BEGIN CERTIFICATE-----\n"
       "MIIBszCCAVmgAwIBAgIUQ\n"
       "AAAA==\n"
       "-----END CERTIFICATE-----\n")


def test_render_matches_the_reviewed_golden_document():
    expected = (FIXTURES / "restrictive-sha384.toml").read_text(encoding="utf-8")
    got = initdata.render("https://kbs.example.com", kbs_cert=PEM, image={
        "image_security_policy_uri": "kbs:///default/security-policy/test",
        "image_pull_proxy": {"https_proxy": "http://proxy:3128"},
    })
    assert got == expected
    # `sha384sum restrictive-sha384.toml`
    assert initdata.digest(got).hex() == (
        "18ee2d1068bd09e0da12f15cde34685749a93de23fcd696e66d15e80a4ae0d318feb641942140a85374aae2e7e2a95a4")


def test_render_puts_cert_in_aa_and_kbs_cert_in_cdh():
    data = tomllib.loads(initdata.render("https://kbs.example.com", kbs_cert=PEM))["data"]
    aa = tomllib.loads(data["aa.toml"])
    cdh = tomllib.loads(data["cdh.toml"])
    assert aa["token_configs"]["kbs"] == {"url": "https://kbs.example.com", "cert": PEM}
    assert aa["token_configs"]["coco_as"] == {"url": "https://kbs.example.com"}
    assert cdh["kbc"] == {"name": "cc_kbc", "url": "https://kbs.example.com", "kbs_cert": PEM}
    assert cdh["socket"] == "unix:///run/confidential-containers/cdh.sock"
    assert cdh["credentials"] == []


def test_render_restrictive_policy_denies_exec_and_log_reads_only():
    rego = tomllib.loads(initdata.render("https://kbs.example.com"))["data"]["policy.rego"]
    assert rego.startswith("package agent_policy\n")
    assert "default ExecProcessRequest := false\n" in rego
    assert "default ReadStreamRequest := false\n" in rego
    assert rego.count(":= false") == 2
    assert rego.count(":= true") == 37


def test_render_allow_all_policy_allows_everything():
    rego = tomllib.loads(initdata.render("https://kbs.example.com", policy="allow-all"))["data"]["policy.rego"]
    assert ":= false" not in rego and rego.count(":= true") == 39


def test_render_keeps_a_custom_policy_verbatim():
    custom = "package agent_policy\n\ndefault ExecProcessRequest := false\n# it's ''' tricky \\ here\n"
    text = initdata.render("https://kbs.example.com", policy="custom", policy_text=custom)
    assert tomllib.loads(text)["data"]["policy.rego"] == custom


def test_render_image_options_land_in_cdh():
    text = initdata.render("https://kbs.example.com", image={
        "registry_configuration_uri": "kbs:///default/registry-configuration/test",
        "max_concurrent_layer_downloads_per_image": 3,
        "extra_root_certificates": [PEM],
        "image_pull_proxy": {"https_proxy": "http://p:3128", "no_proxy": "10.0.0.0/8"},
    })
    cdh = tomllib.loads(tomllib.loads(text)["data"]["cdh.toml"])
    assert cdh["image"]["registry_configuration_uri"] == "kbs:///default/registry-configuration/test"
    assert cdh["image"]["max_concurrent_layer_downloads_per_image"] == 3
    assert cdh["image"]["extra_root_certificates"] == [PEM]
    assert cdh["image"]["image_pull_proxy"] == {"https_proxy": "http://p:3128", "no_proxy": "10.0.0.0/8"}


@pytest.mark.parametrize("kwargs,match", [
    ({"kbs_url": "http://kbs"}, "plain http"),
    ({"kbs_url": "kbs.example.com"}, "not an absolute URL"),
    ({"kbs_url": "https://kbs example"}, "not an absolute URL"),
    ({"kbs_url": ""}, "KBS URL is required"),
    ({"kbs_url": "https://kbs", "algorithm": "sha1"}, "algorithm.*sha256, sha384, sha512"),
    ({"kbs_url": "https://kbs", "policy": "open"}, "unknown preset.*allow-all, restrictive"),
    ({"kbs_url": "https://kbs", "policy": "custom"}, "policy_text: required"),
    ({"kbs_url": "https://kbs", "policy_text": "x"}, "only used with policy 'custom'"),
    ({"kbs_url": "https://kbs", "kbs_cert": "not a pem"}, "PEM certificates"),
    ({"kbs_url": "https://kbs", "image": {"bogus": 1}}, "unknown option.*image_security_policy_uri"),
    ({"kbs_url": "https://kbs", "image": {"work_dir": 5}}, "image.work_dir: expected a string"),
    ({"kbs_url": "https://kbs", "image": {"image_pull_proxy": {"ftp_proxy": "x"}}}, "https_proxy, http_proxy, no_proxy"),
    ({"kbs_url": "http://kbs", "kbs_cert": PEM, "allow_insecure_http": True}, "plain-http KBS takes no certificate"),
])
def test_render_rejects_bad_arguments_with_the_field_named(kwargs, match):
    with pytest.raises(InitdataError, match=match):
        initdata.render(**kwargs)


def test_render_insecure_http_needs_the_explicit_opt_in():
    text = initdata.render("http://kbs.trustee.svc:8080", allow_insecure_http=True)
    assert initdata.validate(text, allow_insecure_http=True)["kbs_url"] == "http://kbs.trustee.svc:8080"


def test_annotation_key_is_the_kata_one():
    assert initdata.ANNOTATION_KEY == "io.katacontainers.config.hypervisor.cc_init_data"
