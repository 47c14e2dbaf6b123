"""kata-cc pods on the twin run as confidential guests: initdata bound at launch, the in-pod API, vectorAdd.

One twin with the host configuration done (IOMMU, TDX), the GPU operator twin's ClusterPolicy
(GPUs bound to vfio-pci and in CC mode), OSC's runtime classes written as OSC names them, and a
Restricted Trustee with reference values for the guest's command line. Pods are bound to
worker-0 directly (the scheduler's part is tests/twin/sandboxed/test_scheduling.py); their logs
are read through the API server, and the last line is the smoke contract's ``CGPU-SMOKE-RESULT``.
"""

import hashlib
import json

import pytest

from plugins.module_utils import attestation_policy, initdata
from tests.twin.guest_helpers import KERNEL_PARAMS, NODE, TRUSTEE_NS, confidential_gpu_twin, restricted_trustee
from tests.twin.sandboxed.conftest import create_pod, ensure_namespace
from tests.twin.sandboxed.conftest import wait_for as wait_for_items
from tests.twin.trustee_helpers import add_resource, restart_kbs, set_reference_values, wait_for
from twin import tee
from twin.kbs.client import token_claims
from twin.kube import path

pytestmark = pytest.mark.twin

PODS_NS = "guest-smoke"
IMAGE = "quay.io/openshift_sandboxed_containers/gpu-verifier:ubi9"
SECRET = b"the-workload-secret"
RESOURCE = "default/kbsres1/key1"
SCRIPT = ("/opt/cuda-samples/Samples/0_Introduction/vectorAdd/build/vectorAdd; "
          "curl -s http://127.0.0.1:8006/aa/token?token_type=kbs; "
          "curl -s -w '%{http_code}' http://127.0.0.1:8006/cdh/resource/$CGPU_SMOKE_RESOURCE; "
          "echo CGPU-SMOKE-RESULT ...")


@pytest.fixture(scope="module")
def guest_twin(twin_factory, tmp_path_factory, twin_crds):
    handle = confidential_gpu_twin(twin_factory, tmp_path_factory, twin_crds, "guest")
    ensure_namespace(handle.kube, PODS_NS)
    return handle


@pytest.fixture(scope="module")
def trustee(guest_twin, twin_crds):
    kube, ns = guest_twin.kube, TRUSTEE_NS
    kbs = restricted_trustee(guest_twin, twin_crds)
    kube.create(path("v1", "secrets", namespace=ns), {"metadata": {"name": "kbsres1"},
                                                      "stringData": {"key1": SECRET.decode()}})
    add_resource(kube, ns, "kbsres1")
    restart_kbs(kube, ns)
    url = f"https://{kbs['host']}"
    return {"kube": kube, "url": url, "ca": kbs["material"].ca_pem, "values": kbs["values"],
            "toml": initdata.render(url, kbs_cert=kbs["material"].ca_pem)}


def smoke_pod(name, annotation, runtime_class="kata-cc-nvidia-gpu"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": {
        "io.katacontainers.config.hypervisor.cc_init_data": annotation,
        "io.katacontainers.config.hypervisor.kernel_params": KERNEL_PARAMS,
        "io.katacontainers.config.hypervisor.default_memory": "32768"}},
        "spec": {"runtimeClassName": runtime_class, "restartPolicy": "Never", "nodeName": NODE,
                 "containers": [{"name": "smoke", "image": IMAGE, "command": ["/bin/bash", "-c", SCRIPT],
                                 "env": [{"name": "CGPU_SMOKE_RESOURCE", "value": RESOURCE}],
                                 "resources": {"limits": {"nvidia.com/pgpu": "1"}}}]}}


def run_pod(kube, body, finished=("Succeeded", "Failed")):
    pods = path("v1", "pods", namespace=PODS_NS)
    create_pod(kube, PODS_NS, body)
    name = body["metadata"]["name"]
    return wait_for(kube, pods, name, lambda o: (o.get("status") or {}).get("phase") in finished, timeout=60,
                    what=f"pod {name} finished")


def smoke_result(kube, name):
    text = kube.request("GET", path("v1", "pods", name, PODS_NS, "log"))
    last = text.rstrip("\n").splitlines()[-1]
    marker, body = last.partition(" ")[::2]
    assert marker == "CGPU-SMOKE-RESULT", text
    return text, json.loads(body)


def sandbox_event(kube, name):
    def failed(items):
        return any(e["involvedObject"]["name"] == name and e["reason"] == "FailedCreatePodSandBox"
                   for e in items.values())

    events = wait_for_items(kube, path("v1", "events", namespace=PODS_NS), failed, timeout=30,
                            what=f"FailedCreatePodSandBox for {name}")
    return next(e for e in events.values() if e["involvedObject"]["name"] == name)


def statuses(token):
    return {n: s["ear.status"] for n, s in token_claims(token)["submods"].items()}


def test_confidential_gpu_pod_attests_cpu_and_gpu_and_gets_its_secret(trustee):
    kube = trustee["kube"]
    pod = run_pod(kube, smoke_pod("smoke-good", initdata.encode_annotation(trustee["toml"])))
    assert pod["status"]["phase"] == "Succeeded"
    text, result = smoke_result(kube, "smoke-good")
    assert "Test PASSED" in text and result["vectoradd"] == {"exit_code": 0}
    assert result["token"]["status"] == 200 and result["token"]["error"] is None
    assert statuses(result["token"]["token"]) == {"cpu0": "affirming", "gpu0": "affirming"}
    cpu0 = token_claims(result["token"]["token"])["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert cpu0["init_data"] == initdata.bindings(trustee["toml"])["tdx_mrconfigid"]
    assert result["resource"] == {"status": 200, "sha256": hashlib.sha256(SECRET).hexdigest(), "error": None}
    assert "tee_keypair" not in text and SECRET.decode() not in text


@pytest.mark.parametrize("annotation, words", [
    ("bm90IGd6aXA=", "initdata create gzip reader error: gzip: invalid header"),
    (None, "kata-agent: Unsupported initdata version"),
])
def test_malformed_initdata_annotation_keeps_the_sandbox_from_starting(trustee, annotation, words):
    kube = trustee["kube"]
    name = "smoke-bad-gzip" if annotation else "smoke-bad-version"
    if annotation is None:
        annotation = initdata.encode_annotation(trustee["toml"].replace('version = "0.1.0"', 'version = "0.2.0"'))
    kube.create(path("v1", "pods", namespace=PODS_NS), smoke_pod(name, annotation))
    event = sandbox_event(kube, name)
    assert event["type"] == "Warning" and words in event["message"], event["message"]
    assert event["message"].startswith("Failed to create pod sandbox: rpc error: code = Unknown desc = ")
    pod = kube.get(path("v1", "pods", name, PODS_NS))
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    kube.delete(path("v1", "pods", name, PODS_NS))


def test_plain_kata_pod_cannot_attest(trustee):
    kube = trustee["kube"]
    run_pod(kube, smoke_pod("smoke-kata", initdata.encode_annotation(trustee["toml"]), runtime_class="kata"))
    text, result = smoke_result(kube, "smoke-kata")
    assert result["token"]["status"] == 0 and result["token"]["token"] is None
    assert result["resource"]["status"] == 0 and result["resource"]["sha256"] is None
    assert "Couldn't connect to server" in result["resource"]["error"]
    assert result["vectoradd"]["exit_code"] == 1


def test_gpu_left_out_of_cc_mode_fails_vectoradd_and_gpu_attestation(guest_twin, trustee):
    kube = trustee["kube"]
    guest_twin.set_faults([{"kind": "guest-gpu-cc-off", "node": NODE}])
    try:
        run_pod(kube, smoke_pod("smoke-gpu-off", initdata.encode_annotation(trustee["toml"])))
    finally:
        guest_twin.set_faults([])
    text, result = smoke_result(kube, "smoke-gpu-off")
    assert "Failed to allocate device vector A (error code no CUDA-capable device is detected)!" in text
    assert result["vectoradd"] == {"exit_code": 1}
    found = statuses(result["token"]["token"])
    assert found["cpu0"] == "affirming" and found["gpu0"] != "affirming"


def test_debug_guest_is_not_affirmed(guest_twin, trustee):
    kube = trustee["kube"]
    guest_twin.set_faults([{"kind": "guest-debug", "node": NODE}])
    try:
        run_pod(kube, smoke_pod("smoke-debug", initdata.encode_annotation(trustee["toml"])))
    finally:
        guest_twin.set_faults([])
    result = smoke_result(kube, "smoke-debug")[1]
    claims = token_claims(result["token"]["token"])["submods"]["cpu0"]
    assert claims["ear.veraison.annotated-evidence"]["tdx"]["td_attributes"]["debug"] is True
    assert claims["ear.status"] != "affirming"
    assert result["resource"]["status"] == 500


def test_one_byte_of_initdata_changed_is_refused_with_pinning(trustee):
    kube, ns = trustee["kube"], TRUSTEE_NS
    cpu = path("v1", "configmaps", "trustee-config-attestation-policy-cpu", ns)
    (key, text), = kube.get(cpu)["data"].items()
    kube.merge_patch(cpu, {"data": {key: attestation_policy.pin(text)}})
    pinned = initdata.bindings(trustee["toml"])["tdx_mrconfigid"]
    set_reference_values(kube, ns, trustee["values"] + [
        {"name": "init_data", "expiration": tee.REFERENCE_EXPIRATION, "value": [pinned]}])
    restart_kbs(kube, ns)
    changed = trustee["toml"].replace("default ReadStreamRequest := false", "default ReadStreamRequest := true")
    assert changed != trustee["toml"]
    run_pod(kube, smoke_pod("smoke-changed", initdata.encode_annotation(changed)))
    result = smoke_result(kube, "smoke-changed")[1]
    assert result["resource"]["status"] == 500 and result["resource"]["sha256"] is None
    assert "403 PolicyDeny" in result["resource"]["error"], result["resource"]["error"]
    # the pinned initdata itself still gets its secret
    run_pod(kube, smoke_pod("smoke-pinned", initdata.encode_annotation(trustee["toml"])))
    result = smoke_result(kube, "smoke-pinned")[1]
    assert result["resource"]["status"] == 200, result
