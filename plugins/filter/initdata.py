# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters over initdata TOML: digest, TEE binding and the pod annotation, in both directions."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.confidential.gpu.plugins.module_utils.initdata import (
    InitdataError,
    decode_annotation,
    digest,
    encode_annotation,
    tee_binding,
)


def _guard(name, func, *args):
    try:
        return func(*args)
    except InitdataError as exc:
        raise AnsibleFilterError("{0}: {1}".format(name, exc))


def initdata_digest(toml_text):
    """Hex digest of the exact TOML bytes, with the algorithm the document names."""
    return _guard("initdata_digest", digest, toml_text).hex()


def initdata_binding(toml_text, tee="tdx"):
    """Hex of the value the TEE reports: TDX MRCONFIGID (48 bytes) or SNP HOSTDATA (32 bytes)."""
    return _guard("initdata_binding", lambda t, e: tee_binding(digest(t), e), toml_text, tee).hex()


def initdata_annotation(toml_text):
    """base64(gzip(toml)) for the io.katacontainers.config.hypervisor.cc_init_data annotation."""
    return _guard("initdata_annotation", encode_annotation, toml_text)


def initdata_decode(annotation):
    """The TOML inside a cc_init_data annotation value."""
    return _guard("initdata_decode", decode_annotation, annotation)


class FilterModule:
    def filters(self):
        return {
            "initdata_digest": initdata_digest,
            "initdata_binding": initdata_binding,
            "initdata_annotation": initdata_annotation,
            "initdata_decode": initdata_decode,
        }
