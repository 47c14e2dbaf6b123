"""A 1000-node twin comes up, and stays, with only the taints its nodes registered with.

kube-controller-manager's node lifecycle controller taints a node unreachable when its Lease and
Ready heartbeat lag past the grace period, and the API server's TaintNodesByCondition admission
taints every new node not-ready until its Ready condition is seen (kubernetes@v1.34
pkg/controller/nodelifecycle/node_lifecycle_controller.go, plugin/pkg/admission/nodetaint). At 1000
nodes the kubelet twin has to keep up as 1000 kubelets would. Slow (minutes on a small machine);
the scale bench (tests/bench/scale.py) shows the same numbers beside its request counts.
"""

import os

import pytest

from tests.bench.scale import GRACE, extra_taints, registered_taints, taints_over
from twin.cluster import Cluster

# Minutes of a 1000-node twin: with the benchmarks (CGPU_FULL=1 ./scripts/test.sh), not in every run.
pytestmark = [
    pytest.mark.twin,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("CGPU_FULL") != "1", reason="1000-node twin: runs with CGPU_FULL=1"),
]


def test_a_thousand_nodes_come_up_and_stay_untainted(tmp_path):
    cluster = Cluster("scale-taints", tmp_path / "twin")
    cluster.up("scale-1000", log=lambda msg: None)
    try:
        kube = cluster.kube("admin")
        registered = registered_taints(cluster)
        assert len(registered) == 1000
        assert extra_taints(kube, registered) == {}
        # One node-monitor grace period and more: a lagging heartbeat would show as a taint here.
        seen = taints_over(kube, registered, GRACE)
        assert seen == {}, f"{len(seen)} nodes were tainted within {GRACE}s of up, e.g. {list(seen.items())[:3]}"
    finally:
        assert cluster.down() == []
