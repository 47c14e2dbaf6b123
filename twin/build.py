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
    # Concurrent callers (parallel test runs, the demo) take a file lock, as for the engine: one
    # builds, the others block and then find the binaries, instead of racing on the same .tmp files.
    import fcntl

    with open(target / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        todo = missing(version)
        if todo:
            _build_binaries(go, target, todo, version, log)
    return target


def _build_binaries(go: str, target: Path, todo: list, version: str, log) -> None:
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



# -- the attestation engine of the Trustee twin ---------------------------------------------------
#
# Upstream Trustee evaluates policies with regorus, builds and signs its tokens with veraison's ear
# crate and parses KBS messages with kbs-types. The twin runs those crates, at trustee's pinned
# versions, in one small Rust program (twin/engine, its Cargo.lock committed) built from crates.io
# on first use and cached by the hash of its sources, like the control plane.

ENGINE_SRC = Path(__file__).resolve().parent / "engine"
ENGINE_NAME = "twin-attestation-engine"


def engine_hash() -> str:
    """Hash of what decides the engine binary: its manifest, lock file and sources."""
    import hashlib

    digest = hashlib.sha256()
    files = [ENGINE_SRC / "Cargo.toml", ENGINE_SRC / "Cargo.lock", *sorted((ENGINE_SRC / "src").rglob("*.rs"))]
    for path in files:
        digest.update(path.relative_to(ENGINE_SRC).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def engine_path(source_hash: str = None) -> Path:
    override = os.environ.get("TWIN_ENGINE")
    if override:
        return Path(override)
    return cache_dir() / "engine" / (source_hash or engine_hash()) / ENGINE_NAME


def ensure_engine(log=None) -> Path:
    """Return the path of the attestation engine, building it with cargo first if needed.

    Concurrent callers (tests, KBS processes) take a file lock: one builds, the others block on the
    lock and then find the binary. cargo's target directory is shared between source hashes, so a
    change of the sources rebuilds only the engine itself.
    """
    import fcntl

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    target = engine_path()
    if os.access(target, os.X_OK):
        return target
    cargo = shutil.which("cargo")
    if not cargo:
        raise RuntimeError(f"cargo is needed to build the twin's attestation engine ({ENGINE_SRC}); install Rust "
                           "(rustup) or set TWIN_ENGINE to a built binary")
    root = cache_dir() / "engine"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.access(target, os.X_OK):
            return target
        crates = sum(1 for line in (ENGINE_SRC / "Cargo.lock").read_text().splitlines() if line == "[[package]]")
        log(f"twin: building the attestation engine (regorus, ear, kbs-types from crates.io; {crates} crates) "
            f"(first use; cached in {target.parent})")
        started = time.monotonic()
        env = dict(os.environ, CARGO_TARGET_DIR=str(root / "target"), CARGO_TERM_COLOR="never")
        cmd = [cargo, "build", "--release", "--locked", "--manifest-path", str(ENGINE_SRC / "Cargo.toml")]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        tail, compiled = [], 0
        for line in proc.stderr:
            tail = (tail + [line])[-60:]
            if line.lstrip().startswith("Compiling "):
                compiled += 1
                if compiled % 25 == 0:
                    log(f"twin: engine: compiled {compiled}/{crates} crates ({time.monotonic() - started:.0f}s)")
        if proc.wait() != 0:
            raise RuntimeError(f"cargo build of the attestation engine failed (exit {proc.returncode}):\n"
                               + "".join(tail)[-4000:])
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{ENGINE_NAME}.{os.getpid()}.tmp")
        shutil.copy2(root / "target" / "release" / ENGINE_NAME, tmp)
        os.replace(tmp, target)
        log(f"twin: built the attestation engine in {time.monotonic() - started:.0f}s")
    return target


if __name__ == "__main__":
    if sys.argv[1:] == ["engine"]:
        print(ensure_engine())
    else:
        print(ensure_binaries())
