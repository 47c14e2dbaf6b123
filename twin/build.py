"""Build the control-plane binaries from Go modules, once per version, into the user cache.

kube-apiserver is shipped by no package registry reachable here, so the recipe in
``twin/k8sbin`` (a throwaway Go module pinning k8s.io/kubernetes and its staging modules) is
compiled with the local Go toolchain. Binaries are cached by version and never enter git.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import KUBERNETES_VERSION
from .paths import cache_dir

RECIPE = Path(__file__).resolve().parent / "k8sbin"

# name -> Go package; the Kubernetes commands are version-stamped like upstream's release build.
COMMANDS = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "etcd": "go.etcd.io/etcd/server/v3",
}


def bin_dir(version: str = KUBERNETES_VERSION) -> Path:
    override = os.environ.get("TWIN_BIN_DIR")
    if override:
        return Path(override)
    return cache_dir() / "bin" / version


def missing(version: str = KUBERNETES_VERSION) -> list:
    d = bin_dir(version)
    return [name for name in COMMANDS if not os.access(d / name, os.X_OK)]


def _ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = "k8s.io/component-base/version"
    return " ".join([
        "-s", "-w",
        f"-X {stamp}.gitVersion={version}",
        f"-X {stamp}.gitMajor={major}",
        f"-X {stamp}.gitMinor={minor}",
        f"-X {stamp}.gitTreeState=clean",
    ])


def ensure_binaries(version: str = KUBERNETES_VERSION, log=None) -> Path:
    """Return the directory holding all four binaries, building the missing ones first."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    target = bin_dir(version)
    todo = missing(version)
    if not todo:
        return target
    go = shutil.which("go")
    if not go:
        raise RuntimeError(
            f"Go is needed to build {', '.join(todo)} {version} (no package registry ships "
            "kube-apiserver); install Go >= 1.24 or set TWIN_BIN_DIR to a directory holding them"
        )
    target.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-trimpath")
    total = time.monotonic()
    for name in todo:
        started = time.monotonic()
        log(f"twin: building {name} {version} from Go modules (first use; cached in {target})")
        cmd = [go, "build", "-o", str(target / (name + ".tmp")), COMMANDS[name]]
        if name != "etcd":
            cmd[2:2] = ["-ldflags", _ldflags(version)]
        proc = subprocess.run(cmd, cwd=RECIPE, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"go build of {name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        os.replace(target / (name + ".tmp"), target / name)
        log(f"twin: built {name} in {time.monotonic() - started:.0f}s")
    log(f"twin: control-plane binaries ready in {time.monotonic() - total:.0f}s")
    return target


if __name__ == "__main__":
    print(ensure_binaries())
