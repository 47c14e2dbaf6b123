"""What a container "does" on the twin: its exit code and its log, decided by a registry.

The kubelet twin runs no images. For each container it asks the registry, in order, for the first
workload that claims it; later twins register theirs (the node probe runs the real host_facts
code against the node's simulated root; the smoke pod runs its CUDA and attestation steps).
"""

from dataclasses import dataclass, field


@dataclass
class Result:
    exit_code: int = 0
    log: str = ""
    running: bool = False  # keeps running (a server); exit_code/log then describe its start


@dataclass
class Context:
    pod: dict
    container: dict
    host: object  # world.Host of the node the pod is bound to
    world: object
    extra: dict = field(default_factory=dict)


class Workload:
    name = "workload"

    def claims(self, ctx: Context) -> bool:
        raise NotImplementedError

    def run(self, ctx: Context) -> Result:
        raise NotImplementedError


class Default(Workload):
    """Anything unknown: servers keep running, jobs succeed quietly."""

    name = "default"

    def claims(self, ctx):
        return True

    def run(self, ctx):
        if ctx.pod["spec"].get("restartPolicy", "Always") == "Always":
            return Result(running=True, log=f"{ctx.container['name']}: started\n")
        return Result(exit_code=0, log="")


REGISTRY = []


def register(workload):
    """Add a workload ahead of the default; later registrations win over earlier ones."""
    REGISTRY.insert(0, workload)


def resolve(ctx):
    for workload in REGISTRY:
        if workload.claims(ctx):
            return workload
    return Default()
