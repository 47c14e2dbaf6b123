# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The initdata filters, with literals computed by sha256sum/sha384sum and GNU gzip (see test_initdata.py)."""

from __future__ import annotations

import base64
import gzip

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.confidential.gpu.plugins.filter.initdata import FilterModule

FILTERS = FilterModule().filters()
DOC = ('algorithm = "sha256"\nversion = "0.1.0"\n\n[data]\n"aa.toml" = \'\'\'\n[token_configs.kbs]\n'
       'url = "https://kbs.example.com"\n\'\'\'\n')
SHA256_HEX = "b39fee7c1dd9f2e2c07beb7d9f1534c70c804a57a7ed54dbec54dcf6deb3b990"
GNU_ANNOTATION_SHA384 = ("H4sIAAAAAAAAAxXLwQqDMAyA4XueQnLpLTq2wxjsSURGdJ0tto002fDxZ6/fz89plRot5O7ZoQa+3m8IP181Smk00IUGBBjf"
                         "bDwBMpNJTng25xyMJpsvr0XKJ65K26wTfGtqZzDb9dH3p5E/OO/J0yIZoX1/xEUYfXcAAAA=")
SHA384_HEX = "8efe34a9d3f7356b870519452bb88a1914d34a270e5a6e95ad97ab1800634a82a8125a9c60bc575332f92d5c9593041a"


def test_the_four_filters_are_registered():
    assert sorted(FILTERS) == ["initdata_annotation", "initdata_binding", "initdata_decode", "initdata_digest"]


def test_digest_and_binding():
    assert FILTERS["initdata_digest"](DOC) == SHA256_HEX
    assert FILTERS["initdata_binding"](DOC) == SHA256_HEX + "0" * 32
    assert FILTERS["initdata_binding"](DOC, "tdx") == SHA256_HEX + "0" * 32
    assert FILTERS["initdata_binding"](DOC, "snp") == SHA256_HEX


def test_decode_then_digest_of_a_gnu_gzip_annotation():
    assert FILTERS["initdata_digest"](FILTERS["initdata_decode"](GNU_ANNOTATION_SHA384)) == SHA384_HEX


def test_annotation_round_trip():
    value = FILTERS["initdata_annotation"](DOC)
    assert gzip.decompress(base64.b64decode(value)) == DOC.encode()
    assert FILTERS["initdata_decode"](value) == DOC


@pytest.mark.parametrize("name,args,match", [
    ("initdata_digest", ('algorithm = "sha1"\n',), "initdata_digest: algorithm"),
    ("initdata_binding", (DOC, "sev"), "initdata_binding: tee"),
    ("initdata_decode", (base64.b64encode(DOC.encode()).decode(),), "initdata_decode: annotation.*plain TOML"),
    ("initdata_annotation", (None,), "initdata_annotation: initdata: expected text"),
])
def test_errors_become_filter_errors(name, args, match):
    with pytest.raises(AnsibleFilterError, match=match):
        FILTERS[name](*args)
