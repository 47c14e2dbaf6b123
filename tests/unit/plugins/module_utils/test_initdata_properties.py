# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Properties of the initdata byte rules, checked against the rules themselves (hashlib, gzip,
base64 from the standard library), and "no traceback on any input"."""

from __future__ import annotations

import base64
import gzip
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.confidential.gpu.plugins.module_utils import initdata
from ansible_collections.confidential.gpu.plugins.module_utils.initdata import InitdataError

SIZES = {"tdx": 48, "snp": 32}
# Text Python can encode as UTF-8 (no lone surrogates), as any real document is.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=2000)


@given(digest=st.binary(max_size=160), tee=st.sampled_from(["tdx", "snp"]))
def test_binding_is_truncate_or_zero_pad_at_the_end(digest, tee):
    size = SIZES[tee]
    bound = initdata.tee_binding(digest, tee)
    assert len(bound) == size
    kept = min(size, len(digest))
    assert bound[:kept] == digest[:kept]
    assert bound[kept:] == b"\x00" * (size - kept)


@given(data=st.binary(max_size=4096), alg=st.sampled_from(["sha256", "sha384", "sha512"]))
def test_binding_of_a_real_digest_never_rehashes(data, alg):
    digest = hashlib.new(alg, data).digest()
    assert initdata.tee_binding(digest, "tdx")[: min(48, len(digest))] == digest[:48]
    assert initdata.tee_binding(digest, "snp") == digest[:32]


@given(text=TEXT)
def test_annotation_round_trips_exact_text(text):
    value = initdata.encode_annotation(text)
    assert initdata.decode_annotation(value) == text
    assert gzip.decompress(base64.b64decode(value, validate=True)) == text.encode("utf-8")
    assert "\n" not in value


@given(text=TEXT, level=st.integers(min_value=0, max_value=9), mtime=st.integers(min_value=0, max_value=2**32 - 1))
def test_decode_accepts_any_gzip_encoder_settings(text, level, mtime):
    value = base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=level, mtime=mtime)).decode()
    assert initdata.decode_annotation(value) == text


@given(value=st.text(max_size=600))
def test_decode_of_any_text_returns_text_or_a_clear_error(value):
    try:
        assert isinstance(initdata.decode_annotation(value), str)
    except InitdataError as exc:
        assert str(exc).startswith("annotation")


@given(raw=st.binary(max_size=600))
def test_decode_of_any_base64_payload_returns_text_or_a_clear_error(raw):
    for packed in (raw, b"\x1f\x8b\x08" + raw):
        try:
            initdata.decode_annotation(base64.b64encode(packed).decode())
        except InitdataError as exc:
            assert str(exc).startswith("annotation")


@given(text=st.text(max_size=800))
@settings(max_examples=300)
def test_digest_and_validate_never_leak_other_exceptions(text):
    for call in (initdata.digest, initdata.validate):
        try:
            call(text)
        except InitdataError:
            pass


@given(alg=st.sampled_from(["sha256", "sha384", "sha512"]), body=st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=200), newline=st.sampled_from(["\n", "\r\n"]))
def test_digest_equals_hashlib_over_the_exact_bytes(alg, body, newline):
    text = 'algorithm = "{0}"{2}version = "0.1.0"{2}# {1}{2}[data]{2}'.format(alg, body, newline)
    assert initdata.digest(text) == hashlib.new(alg, text.encode("utf-8")).digest()


@given(host=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
       port=st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
       path=st.from_regex(r"(/[A-Za-z0-9._~%!$&()*+,;=:@-]{0,12}){0,3}", fullmatch=True))
def test_render_carries_any_kbs_url_exactly(host, port, path):
    url = "https://" + host + (":{0}".format(port) if port else "") + path
    text = initdata.render(url)
    assert initdata.validate(text)["kbs_urls"] == {"aa.kbs": url, "aa.coco_as": url, "cdh.kbc": url}
