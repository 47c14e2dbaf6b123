"""What a container "does" on the twin: its exit code and its log, decided by a registry.

The kubelet twin runs no images. For each container it asks the registry, in order, for the first
workload that claims it; later twins register theirs (the node probe runs the real host_facts
code against the node's simulated root; the smoke pod runs its CUDA and attestation steps).
"""

import hashlib
import json
from dataclasses import dataclass, field


@dataclass
class Result:
    exit_code: int = 0
    log: str = ""
    running: bool = False  # keeps running (a server); exit_code/log then describe its start
    ready: bool = None  # a running container not ready yet (still waiting for something); None: ready when running


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


# -- the GPU verifier image: vectorAdd and the in-pod attestation API --------------------------------

SMOKE_RESULT_MARKER = "CGPU-SMOKE-RESULT"
VECTORADD = "/opt/cuda-samples/Samples/0_Introduction/vectorAdd/build/vectorAdd"
IN_POD_API = "http://127.0.0.1:8006"
# curl's words when nothing listens on the port (exit 7, CURLE_COULDNT_CONNECT).
CURL_REFUSED = "curl: (7) Failed to connect to 127.0.0.1 port 8006 after 0 ms: Couldn't connect to server"


def vector_add(usable):
    """(exit code, output) of cuda-samples ``Samples/0_Introduction/vectorAdd/vectorAdd.cu``.

    The sample prints its banner, then ``cudaMalloc`` of d_A is the first CUDA call: without a
    usable device it fails with ``Failed to allocate device vector A (error code %s)!`` (the
    ``cudaGetErrorString`` of ``cudaErrorNoDevice``) and ``exit(EXIT_FAILURE)``.
    """
    lines = ["[Vector addition of 50000 elements]"]
    if not usable:
        lines.append("Failed to allocate device vector A (error code no CUDA-capable device is detected)!")
        return 1, "\n".join(lines) + "\n"
    lines += ["Copy input data from the host memory to the CUDA device",
              "CUDA kernel launch with 196 blocks of 256 threads",
              "Copy output data from the CUDA device to the host memory",
              "Test PASSED", "Done"]
    return 0, "\n".join(lines) + "\n"


class GpuVerifier(Workload):
    """``quay.io/openshift_sandboxed_containers/gpu-verifier``: what the smoke pod's script does, step by step.

    The twin runs no shell; it reads the container's command for the steps the smoke script takes
    (vectorAdd, ``curl .../aa/token``, ``curl .../cdh/resource/$CGPU_SMOKE_RESOURCE``) and answers
    them from the pod's sandbox (``twin.guest``): the GPU the guest got, and the in-pod API with
    the statuses and bodies api-server-rest gives. With the ``CGPU-SMOKE-RESULT`` marker in the
    script, the last line is that marker and the compact JSON of the contract; the secret and the
    TEE key pair are never printed. A script that ends in ``sleep`` keeps running (the article's pod).
    """

    name = "gpu-verifier"

    def claims(self, ctx):
        image = ctx.container.get("image", "")
        return "/gpu-verifier:" in image or image.endswith("/gpu-verifier")

    def run(self, ctx):
        script = " ".join(ctx.container.get("command", []) + ctx.container.get("args", []))
        sandbox = (ctx.extra or {}).get("sandbox")
        api = sandbox.api if sandbox is not None else None
        out = ""
        result = {}
        if VECTORADD in script:
            code, text = vector_add(sandbox.gpu_usable() if sandbox is not None else False)
            out += text
            result["vectoradd"] = {"exit_code": code}
        if "/aa/token" in script:
            status, body = self._get(api, "/aa/token?token_type=kbs")
            token, error = None, None
            if status == 200:
                try:
                    token = json.loads(body)["token"]
                except (ValueError, KeyError, TypeError) as exc:
                    error = f"token response is not the AA's JSON: {exc}"
            else:
                error = body.decode(errors="replace") if status else CURL_REFUSED
            result["token"] = {"status": status, "token": token, "error": error}
        if "/cdh/resource/" in script:
            env = {e.get("name"): e.get("value") for e in ctx.container.get("env") or []}
            resource = env.get("CGPU_SMOKE_RESOURCE", "")
            status, body = self._get(api, f"/cdh/resource/{resource}")
            result["resource"] = {"status": status, "sha256": hashlib.sha256(body).hexdigest() if status == 200 else None,
                                  "error": None if status == 200 else (body.decode(errors="replace") if status
                                                                       else CURL_REFUSED)}
        if SMOKE_RESULT_MARKER in script:
            out += f"{SMOKE_RESULT_MARKER} {json.dumps(result, separators=(',', ':'))}\n"
            return Result(exit_code=0, log=out)
        if "sleep" in script.split("vectorAdd")[-1]:
            return Result(running=True, log=out)
        return Result(exit_code=result.get("vectoradd", {}).get("exit_code", 0), log=out)

    @staticmethod
    def _get(api, target):
        if api is None:
            return 0, b""  # nothing listens on 127.0.0.1:8006: curl -w '%{http_code}' says 000
        return api.get(target)


register(GpuVerifier())
