"""Create what an OpenShift 4.21 cluster already has before the collection runs."""

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor

from .kube import path
from .kubelet import lease_object, node_conditions

# Nodes register in parallel, as kubelets do; one after the other a thousand of them take longer
# than the node lifecycle controller's startup grace period (60 s) on a loaded machine.
REGISTER_WORKERS = 8

NAMESPACES = [
    "openshift-config", "openshift-config-managed", "openshift-marketplace", "openshift-operators",
    "openshift-operator-lifecycle-manager", "openshift-machine-config-operator", "openshift-monitoring",
    "openshift-ingress", "openshift-infra", "twin-system",
    # The API server makes it too, but asynchronously after /readyz; the nodes' Leases live there.
    "kube-node-lease",
]

CATALOGS = [
    ("redhat-operators", "Red Hat Operators", "Red Hat", "registry.redhat.io/redhat/redhat-operator-index:v{minor}"),
    ("certified-operators", "Certified Operators", "Red Hat", "registry.redhat.io/redhat/certified-operator-index:v{minor}"),
]


def node_labels(node):
    name = node["name"]
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node.openshift.io/os_id": "rhcos",
    }
    for role in node["roles"]:
        labels[f"node-role.kubernetes.io/{role}"] = ""
    return labels


def node_object(node, profile, kubelet_port):
    ocp = profile["openshift"]
    taints = []
    roles = set(node["roles"])
    schedulable_masters = all("worker" in n["roles"] for n in profile["nodes"] if "master" in n["roles"]) \
        or not any("worker" in n["roles"] and "master" not in n["roles"] for n in profile["nodes"])
    if "master" in roles and "worker" not in roles and not schedulable_masters:
        taints.append({"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"})
    machine_id = hashlib.sha256(node["name"].encode()).hexdigest()[:32]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node["name"],
            "labels": node_labels(node),
            "annotations": {
                "machineconfiguration.openshift.io/state": "Done",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"taints": taints} if taints else {},
        "status": node_status(node, ocp, kubelet_port, machine_id),
    }


def node_status(node, ocp, kubelet_port, machine_id):
    cores = node["cpu"]["cores"]
    memory = f"{node['memory_gib']}Gi"
    capacity = {"cpu": str(cores), "memory": memory, "pods": "250", "ephemeral-storage": "1843200Mi",
                "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    allocatable = dict(capacity, cpu=f"{cores * 1000 - 500}m",
                       memory=f"{node['memory_gib'] * 1024 - 1024}Mi")
    minor = ".".join(ocp["version"].split(".")[:2])
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": machine_id, "systemUUID": str(uuid.UUID(machine_id)), "bootID": str(uuid.uuid4()),
            "kernelVersion": "5.14.0-570.el9_6.x86_64",
            "osImage": f"Red Hat Enterprise Linux CoreOS {minor.replace('.', '')}.9.6 (Plow)",
            "containerRuntimeVersion": "cri-o://1.34.1-2.rhaos4.21.el9",
            "kubeletVersion": "v1.34.4", "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": "amd64",
        },
        # A kubelet posts its first status right after registering (registerWithAPIServer, then
        # syncNodeStatus in kubernetes@v1.34 pkg/kubelet/kubelet_node_status.go); a node without a
        # Ready condition is "never updated" to the node lifecycle controller and tainted after 60 s.
        "conditions": node_conditions(True),
    }


def seed(kube, profile, kubelet_port):
    ocp = profile["openshift"]
    minor = ".".join(ocp["version"].split(".")[:2])
    for ns in NAMESPACES:
        kube.create_or_get(path("v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": ns, "labels": {"openshift.io/cluster-monitoring": "true"} if ns.startswith("openshift-") else {}}})
    kube.create_or_get(path("v1", "configmaps", namespace="twin-system"), {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "twin-faults", "namespace": "twin-system"},
        "data": {"faults.yaml": "[]\n"}})

    masters = [n for n in profile["nodes"] if "master" in n["roles"]]
    workers = [n for n in profile["nodes"] if "worker" in n["roles"]]
    topology = "SingleReplica" if len(masters) == 1 else "HighlyAvailable"
    cluster_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, ocp["cluster_name"] + "." + ocp["base_domain"]))
    _cluster_object(kube, "config.openshift.io/v1", "clusterversions", {
        "apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion", "metadata": {"name": "version"},
        "spec": {"channel": ocp["channel"], "clusterID": cluster_id},
    }, {
        "desired": {"version": ocp["version"], "channels": [ocp["channel"]],
                    "image": f"quay.io/openshift-release-dev/ocp-release@sha256:{hashlib.sha256(ocp['version'].encode()).hexdigest()}"},
        "history": [{"state": "Completed", "version": ocp["version"], "verified": True,
                     "startedTime": "2026-11-01T00:00:00Z", "completionTime": "2026-11-01T01:00:00Z",
                     "image": "quay.io/openshift-release-dev/ocp-release"}],
        "observedGeneration": 1, "versionHash": hashlib.sha1(ocp["version"].encode()).hexdigest()[:12],
        "availableUpdates": None,
        "conditions": [
            {"type": "Available", "status": "True", "lastTransitionTime": "2026-11-01T01:00:00Z",
             "message": f"Done applying {ocp['version']}"},
            {"type": "Failing", "status": "False", "lastTransitionTime": "2026-11-01T01:00:00Z"},
            {"type": "Progressing", "status": "False", "lastTransitionTime": "2026-11-01T01:00:00Z",
             "message": f"Cluster version is {ocp['version']}"},
        ],
    })
    platform = ocp["platform"]
    platform_status = {"type": platform}
    if platform == "BareMetal":
        platform_status["baremetal"] = {"apiServerInternalIPs": ["192.0.2.5"], "ingressIPs": ["192.0.2.10"]}
    _cluster_object(kube, "config.openshift.io/v1", "infrastructures", {
        "apiVersion": "config.openshift.io/v1", "kind": "Infrastructure", "metadata": {"name": "cluster"},
        "spec": {"platformSpec": {"type": platform}, "cloudConfig": {"name": ""}},
    }, {
        "infrastructureName": f"{ocp['cluster_name']}-{cluster_id[:5]}",
        "platform": platform, "platformStatus": platform_status,
        "apiServerURL": f"https://api.{ocp['cluster_name']}.{ocp['base_domain']}:6443",
        "apiServerInternalURI": f"https://api-int.{ocp['cluster_name']}.{ocp['base_domain']}:6443",
        "controlPlaneTopology": topology,
        "infrastructureTopology": "SingleReplica" if len(workers) <= 1 else "HighlyAvailable",
        "cpuPartitioning": "None",
    })
    _cluster_object(kube, "config.openshift.io/v1", "ingresses", {
        "apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"},
        "spec": {"domain": ocp["apps_domain"]},
    }, {"defaultPlacement": "Workers"})
    _cluster_object(kube, "config.openshift.io/v1", "featuregates", {
        "apiVersion": "config.openshift.io/v1", "kind": "FeatureGate", "metadata": {"name": "cluster"},
        "spec": {},
    }, {"featureGates": [{"version": ocp["version"], "enabled": [], "disabled": []}]})

    for pool, role in (("master", "master"), ("worker", "worker")):
        members = [n for n in profile["nodes"] if role in n["roles"]]
        _cluster_object(kube, "machineconfiguration.openshift.io/v1", "machineconfigpools", {
            "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
            "metadata": {"name": pool, "labels": {
                f"pools.operator.machineconfiguration.openshift.io/{pool}": ""}},
            "spec": {
                "machineConfigSelector": {"matchLabels": {"machineconfiguration.openshift.io/role": pool}},
                "nodeSelector": {"matchLabels": {f"node-role.kubernetes.io/{role}": ""}},
                "paused": False, "maxUnavailable": 1,
            },
        }, {
            "machineCount": len(members), "readyMachineCount": len(members),
            "updatedMachineCount": len(members), "unavailableMachineCount": 0, "degradedMachineCount": 0,
            "observedGeneration": 1,
            "conditions": [
                {"type": "Updated", "status": "True", "lastTransitionTime": "2026-11-01T01:00:00Z"},
                {"type": "Updating", "status": "False", "lastTransitionTime": "2026-11-01T01:00:00Z"},
                {"type": "Degraded", "status": "False", "lastTransitionTime": "2026-11-01T01:00:00Z"},
            ],
        })

    for name, display, publisher, image in CATALOGS:
        p = path("operators.coreos.com/v1alpha1", "catalogsources", namespace="openshift-marketplace")
        kube.create_or_get(p, {
            "apiVersion": "operators.coreos.com/v1alpha1", "kind": "CatalogSource",
            "metadata": {"name": name, "namespace": "openshift-marketplace"},
            "spec": {"sourceType": "grpc", "displayName": display, "publisher": publisher,
                     "image": image.format(minor=minor), "updateStrategy": {"registryPoll": {"interval": "10m"}}},
        })
        kube.merge_patch(f"{p}/{name}/status", {"status": {"connectionState": {
            "address": f"{name}.openshift-marketplace.svc:50051", "lastObservedState": "READY",
            "lastConnect": "2026-11-01T01:00:00Z"}}})

    nodes_path = path("v1", "nodes")
    leases_path = path("coordination.k8s.io/v1", "leases", namespace="kube-node-lease")

    def register(node):
        obj = node_object(node, profile, kubelet_port)
        status = obj.pop("status")
        kube.create_or_get(nodes_path, obj)
        kube.merge_patch(f"{nodes_path}/{node['name']}/status", {"status": status})
        # The kubelet's lease controller creates its Lease on start (ensureLease).
        kube.create_or_get(leases_path, lease_object(node["name"]))

    with ThreadPoolExecutor(REGISTER_WORKERS) as pool:
        list(pool.map(register, profile["nodes"]))  # list(): an error in one raises here


def _cluster_object(kube, api_version, plural, obj, status):
    p = path(api_version, plural)
    current = kube.create_or_get(p, obj)
    # Replace, not merge-patch, the status: a merge patch drops null values that real schemas
    # require (ClusterVersion's status.availableUpdates is required and nullable).
    current["status"] = status
    kube.replace(f"{p}/{obj['metadata']['name']}/status", current)
