# Copyright: (c) 2026, confidential.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""gpu_facts: the support matrix, and nvidia-smi parsing against the outputs the lent H200 gave."""

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.confidential.gpu.plugins.module_utils import gpu_facts

CMD = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "hosts" / "h200-lent" / "cmd"


def out(name):
    return (CMD / (name + ".txt")).read_text(encoding="utf-8")


# -- support matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("device_id", ["0x2335", "2335", "10de:2335", "0X2335", 0x2335, " 2335\n"])
def test_lookup_accepts_every_spelling_of_an_id(device_id):
    info = gpu_facts.lookup(device_id)
    assert (info["name"], info["device_id"], info["known"]) == ("H200 SXM 141GB", "2335", True)


@pytest.mark.parametrize("device_id,name,cc,support", [
    ("2330", "H100 SXM5 80GB", True, "tested"),
    ("2331", "H100 PCIe", True, "tested"),
    ("2321", "H100 NVL", True, "tested"),
    ("2bb5", "RTX PRO 6000 Blackwell Server Edition", True, "tested"),
    ("2335", "H200 SXM 141GB", True, "upstream"),
    ("233b", "H200 NVL", True, "upstream"),
    ("2901", "B200", True, "upstream"),
    ("20b5", "A100 PCIe 80GB", False, "unsupported"),
    ("26b9", "L40S", False, "unsupported"),
])
def test_support_matrix(device_id, name, cc, support):
    info = gpu_facts.lookup(device_id)
    assert (info["name"], info["cc_capable"], info["support"]) == (name, cc, support)


def test_unknown_ids_are_unsupported_and_not_cc_capable():
    assert gpu_facts.lookup("ffff") == {"device_id": "ffff", "name": None, "architecture": None,
                                        "cc_capable": False, "support": "unsupported", "known": False}
    assert gpu_facts.lookup(None)["known"] is False


def test_matrix_is_plain_data_with_valid_levels():
    for device_id, entry in gpu_facts.SUPPORT_MATRIX.items():
        assert len(device_id) == 4 and device_id == device_id.lower()
        assert entry["support"] in gpu_facts.SUPPORT_LEVELS
        assert isinstance(entry["cc_capable"], bool)
        assert entry["support"] == "unsupported" or entry["cc_capable"]


# -- the lent H200, as captured ---------------------------------------------------------------


def test_h200_nvidia_smi_q():
    query = gpu_facts.parse_query(out("nvidia-smi-q"))
    assert (query["driver_version"], query["cuda_version"], query["attached_gpus"]) == ("580.159.04", "13.0", 1)
    (gpu,) = query["gpus"]
    assert gpu["bus_id"] == "00000000:00:06.0"
    assert gpu["product_name"] == "NVIDIA H200"
    assert gpu["architecture"] == "Hopper"
    assert gpu["vbios_version"] == "96.00.A5.00.1A"
    assert gpu["device_id"] == "2335"
    assert gpu["uuid"] == "GPU-2c5d781f-c8f6-2397-4fde-113fad5c1984"
    assert gpu["virtualization_mode"] == "Pass-Through"
    assert gpu["gsp_firmware_version"] == "580.159.04"
    assert gpu["mig_mode"] == "Disabled"
    assert gpu["protected_memory_mib"] == {"total": 0, "used": 0, "free": 0}
    assert gpu["support"]["support"] == "upstream"


@pytest.mark.parametrize("option,expected", [
    ("f", {"cc_feature": "off"}),
    ("e", {"cc_environment": "unavailable"}),
    ("grs", {"ready_state": "not-ready"}),
    ("gc", {"cpu_cc_capabilities": "none"}),
    ("gm", {"gpus": [{"index": 0, "name": "NVIDIA H200", "uuid": "GPU-2c5d781f-c8f6-2397-4fde-113fad5c1984",
                      "protected_memory_kib": 0, "unprotected_memory_kib": 146591680}]}),
    ("q", {"cc_feature": "off", "multi_gpu_mode": "none", "cpu_cc_capabilities": "none",
           "gpu_cc_capabilities": "cc capable", "ready_state": "not-ready"}),
])
def test_h200_conf_compute(option, expected):
    assert gpu_facts.parse_conf_compute(out("conf-compute-" + option)) == expected


def test_h200_summary_says_cc_is_off():
    summary = gpu_facts.summarize(out("nvidia-smi-q"), {o: out("conf-compute-" + o) for o in ("f", "e", "grs", "gm", "gc", "q")})
    assert summary["driver_version"] == "580.159.04"
    assert summary["gpus"][0]["model"] == "NVIDIA H200"
    assert summary["gpus"][0]["cc_capable"] is True
    assert summary["cc"]["cc_feature"] == "off"
    assert summary["cc"]["cc_environment"] == "unavailable"
    assert summary["cc_ready"] is False
    assert len(summary["problems"]) == 1 and summary["problems"][0].startswith("CC mode is off")


# -- a CC-mode GPU (format as the H200 printed it, values of a GPU in CC mode) ----------------

CC_ON = {
    "f": "CC status: ON\n",
    "e": "CC Environment: PRODUCTION\n",
    "grs": "\nConfidential Compute GPUs Ready state: ready\n\n",
    "q": ("\n==============NVSMI CONF-COMPUTE LOG==============\n\n"
          "    CC State                   : ON\n"
          "    Multi-GPU Mode             : None\n"
          "    CPU CC Capabilities        : INTEL TDX\n"
          "    GPU CC Capabilities        : CC Capable\n"
          "    CC GPUs Ready State        : Ready\n\n"),
    "gm": "GPU 0: NVIDIA H100 PCIe (UUID: GPU-1)\nProtected memory size:   80000000 KiB\nUnprotected memory size: 1048576 KiB\n",
}


def test_cc_on_and_ready():
    summary = gpu_facts.summarize(None, CC_ON)
    assert summary["cc_ready"] is True and summary["problems"] == []
    assert summary["cc"]["cpu_cc_capabilities"] == "intel tdx"
    assert summary["cc"]["gpus"][0]["protected_memory_kib"] == 80000000


def test_cc_on_but_not_ready_and_not_production():
    outputs = dict(CC_ON, grs="Confidential Compute GPUs Ready state: not-ready\n", e="CC Environment: INTERNAL\n")
    summary = gpu_facts.summarize(None, outputs)
    assert summary["cc_ready"] is False
    assert any("not ready" in p for p in summary["problems"])
    assert any("internal, not production" in p for p in summary["problems"])


def test_devtools_is_called_out():
    summary = gpu_facts.summarize(None, {"f": "CC status: DEVTOOLS\n"})
    assert any("devtools" in p for p in summary["problems"])


def test_error_output_is_reported_not_raised():
    parsed = gpu_facts.parse_conf_compute("Failed to get Confidential Compute feature status: Not Supported\n")
    assert parsed == {"error": "Failed to get Confidential Compute feature status: Not Supported"}
    assert any("reported" in p for p in gpu_facts.summarize(None, {"f": "Not Supported\n"})["problems"])


@pytest.mark.parametrize("text", ["", "garbage", "GPU 00000000:01:00.0\n    Product Name : X\n", ":::\n  a\n b : c"])
def test_odd_nvidia_smi_text_never_raises(text):
    gpu_facts.parse_query(text)
    gpu_facts.parse_conf_compute(text)
