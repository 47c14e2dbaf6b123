"""pod_spec: the preflight's check of a confidential GPU workload, from its spec alone."""

from ansible_collections.confidential.gpu.plugins.module_utils import pod_spec, preflight


def pod(pgpu=None, runtime_class="kata-cc-nvidia-gpu", requests=None, containers=1, init=None):
    def container(i):
        resources = {}
        if pgpu is not None:
            resources["limits"] = {"nvidia.com/pgpu": str(pgpu)}
        if requests is not None:
            resources["requests"] = {"nvidia.com/pgpu": str(requests)}
        return {"name": f"c{i}", "image": "registry.example/cuda:12", "resources": resources}

    spec = {"containers": [container(i) for i in range(containers)]}
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    if init is not None:
        spec["initContainers"] = [{"name": "init", "resources": {"limits": {"nvidia.com/pgpu": str(init)}}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "smoke"}, "spec": spec}


def by_id(verdicts):
    return {(v["id"], v["severity"]) for v in verdicts}


def test_one_gpu_with_the_gpu_runtime_class_passes():
    verdicts = pod_spec.check_pod_spec(pod(1))
    assert by_id(verdicts) == {("pod-spec", "pass")}
    assert verdicts[0]["message"] == "asks for 1 confidential GPU with runtimeClassName kata-cc-nvidia-gpu"


def test_two_gpus_are_refused():
    verdicts = pod_spec.check_pod_spec(pod(2))
    assert ("pod-one-gpu", "fail") in by_id(verdicts)
    refusal = next(v for v in verdicts if v["id"] == "pod-one-gpu")
    assert "asks for 2 nvidia.com/pgpu" in refusal["message"] and "one confidential GPU per pod" in refusal["message"]
    assert refusal["subject"] == "smoke" and refusal["evidence"] == {"pgpu": 2}
    # one each in two containers is two as well
    assert ("pod-one-gpu", "fail") in by_id(pod_spec.check_pod_spec(pod(1, containers=2)))


def test_init_container_counts_alone_and_templates_are_looked_into():
    assert pod_spec.gpu_count(pod(1, init=1)["spec"]) == 1
    assert pod_spec.gpu_count(pod(None, init=2)["spec"]) == 2
    deployment = {"kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"template": {"spec": pod(2)["spec"]}}}
    cron = {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": pod(2)["spec"]}}}}}
    for workload in (deployment, cron, pod(2)["spec"]):
        assert ("pod-one-gpu", "fail") in by_id(pod_spec.check_pod_spec(workload))


def test_runtime_class_and_limits():
    assert ("pod-runtime-class", "fail") in by_id(pod_spec.check_pod_spec(pod(1, runtime_class="kata-cc")))
    assert ("pod-runtime-class", "fail") in by_id(pod_spec.check_pod_spec(pod(1, runtime_class=None)))
    assert ("pod-runtime-class", "warn") in by_id(pod_spec.check_pod_spec(pod(None)))
    assert ("pod-pgpu-limit", "fail") in by_id(pod_spec.check_pod_spec(pod(None, requests=1)))
    assert ("pod-pgpu-limit", "fail") in by_id(pod_spec.check_pod_spec(pod(1, requests=2)))
    assert by_id(pod_spec.check_pod_spec(pod(1, requests=1))) == {("pod-spec", "pass")}
    assert by_id(pod_spec.check_pod_spec(pod(None, runtime_class="kata-cc"))) == {("pod-spec", "pass")}


def test_preflight_verdict_over_workloads():
    verdict = preflight.check_workloads([pod(1), pod(2), pod(None)])
    assert verdict["name"] == "workloads" and verdict["status"] == "fail"
    assert verdict["summary"] == "2 of 3 workload(s) would not run as confidential GPU pods"
    assert any("asks for 2 nvidia.com/pgpu" in d for d in verdict["details"])
    assert preflight.check_workloads([pod(1)])["status"] == "pass"
    assert preflight.check_workloads([pod(None)])["status"] == "warn"
