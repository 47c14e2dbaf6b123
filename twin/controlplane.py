"""Start and stop etcd, kube-apiserver, kube-controller-manager and kube-scheduler on loopback.

Flags follow envtest's (controller-runtime's testing control plane), with what it leaves out
added: TLS everywhere with one CA, RBAC and Node authorization, an audit log (one JSON line per
request), the kubelet's client certificate and CA so logs proxy through to the kubelet twin, and
the controller manager and scheduler so namespaces finish deleting and pods get bound for real.
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import urllib3

from . import pki

AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  users: ["system:apiserver"]
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version", "/openapi*", "/api", "/apis", "/api/*", "/apis/*"]
  verbs: ["get"]
- level: Metadata
"""

# Identities: each component and the twins get their own client certificate, so the audit log
# tells the collection's requests apart from the cluster's own.
USERS = {
    "admin": ("admin", ["system:masters"]),
    "twin": ("system:twin:controllers", ["system:masters"]),
    "controller-manager": ("system:kube-controller-manager", []),
    "scheduler": ("system:kube-scheduler", []),
    "kubelet-client": ("kube-apiserver-kubelet-client", ["system:masters"]),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kubeconfig(server, ca_pem, cert_file, key_file, name="twin"):
    """A kubeconfig with the CA inline and the client certificate by path."""
    import base64
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": name, "user": {
            "client-certificate": str(cert_file), "client-key": str(key_file)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


class ControlPlane:
    """The processes of one twin cluster; everything lives in ``state`` (a directory)."""

    def __init__(self, state: Path, bin_dir: Path, die_with_parent=False):
        self.state = Path(state)
        self.die_with_parent = die_with_parent
        self.bin = Path(bin_dir)
        self.pki = self.state / "pki"
        self.logs = self.state / "logs"
        self.info_file = self.state / "cluster.json"

    # -- PKI and kubeconfigs -------------------------------------------------------------------

    def prepare(self):
        self.pki.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        ca = pki.CertificateAuthority.create()
        ca.save(self.pki)
        ports = {"etcd": free_port(), "etcd_peer": free_port(), "apiserver": free_port(), "kubelet": free_port()}
        ca.issue_to(self.pki, "apiserver", "kube-apiserver", server=True,
                    dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                         "kubernetes.default.svc.cluster.local"], ips=["127.0.0.1", "10.0.0.1"])
        ca.issue_to(self.pki, "kubelet", "system:node:twin-kubelet", orgs=["system:nodes"],
                    server=True, ips=["127.0.0.1"], dns=["localhost"])
        for stem, (cn, orgs) in USERS.items():
            ca.issue_to(self.pki, stem, cn, orgs=orgs, client=True)
        pki.service_account_keypair(self.pki)
        (self.state / "audit-policy.yaml").write_text(AUDIT_POLICY)
        server = f"https://127.0.0.1:{ports['apiserver']}"
        for stem in USERS:
            config = kubeconfig(server, ca.cert_pem, self.pki / f"{stem}.crt", self.pki / f"{stem}.key")
            path = self.state / f"{stem}.kubeconfig"
            path.write_text(json.dumps(config, indent=2))
            path.chmod(0o600)
        info = {"server": server, "ports": ports, "processes": {}}
        self._save(info)
        return info

    def info(self):
        return json.loads(self.info_file.read_text())

    def _save(self, info):
        # Atomically: the controllers' process reads this file as it starts, while the bring-up rewrites it with
        # that process's pid; a reader between truncate and write got an empty file and died (JSONDecodeError).
        partial = self.info_file.with_name(self.info_file.name + ".partial")
        partial.write_text(json.dumps(info, indent=2))
        os.replace(partial, self.info_file)

    # -- processes ------------------------------------------------------------------------------

    def _spawn(self, name, argv, info, env=None):
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, cwd=self.state,
                                preexec_fn=parent_death_signal if self.die_with_parent else None)
        log.close()
        info["processes"][name] = {"pid": proc.pid, "start": _start_time(proc.pid), "argv0": argv[0]}
        self._save(info)
        return proc

    def start(self, log=print):
        info = self.info()
        ports = info["ports"]
        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        peer_url = f"http://127.0.0.1:{ports['etcd_peer']}"
        data = self.state / "etcd"
        data.mkdir(exist_ok=True)
        started = time.monotonic()
        self._spawn("etcd", [
            str(self.bin / "etcd"), "--name=twin", f"--data-dir={data}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=twin={peer_url}", "--unsafe-no-fsync=true", "--log-level=warn",
            "--quota-backend-bytes=4294967296",
        ], info)
        p = self.pki
        self._spawn("kube-apiserver", [
            str(self.bin / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer=https://127.0.0.1:{ports['apiserver']}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--audit-policy-file={self.state / 'audit-policy.yaml'}",
            f"--audit-log-path={self.logs / 'audit.log'}",
            "--audit-log-format=json", "--audit-log-mode=blocking", "--audit-log-maxsize=0",
            f"--kubelet-client-certificate={p / 'kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'kubelet-client.key'}",
            f"--kubelet-certificate-authority={p / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
        ], info)
        self.wait_ready(info["server"], deadline=time.monotonic() + 90)
        log(f"twin: etcd and kube-apiserver ready in {time.monotonic() - started:.1f}s")
        self._spawn("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"),
            f"--kubeconfig={self.state / 'controller-manager.kubeconfig'}",
            # No health endpoint is needed, and a port picked ahead of time can be taken meanwhile.
            "--leader-elect=false", "--secure-port=0",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            "--use-service-account-credentials=true",
            # No cloud, no IPAM, no certificate signing on a twin.
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller,"
            "-certificatesigningrequest-signing-controller",
            "--concurrent-gc-syncs=5",
            # OpenShift's client rate limits for the controller manager (cluster-kube-controller-manager-
            # operator bindata/assets/config/defaultconfig.yaml), not upstream's 20/30: at 1000 nodes the
            # node lifecycle controller's taint removals otherwise queue for a minute.
            "--kube-api-qps=150", "--kube-api-burst=300",
        ], info)
        self._spawn("kube-scheduler", [
            str(self.bin / "kube-scheduler"),
            f"--kubeconfig={self.state / 'scheduler.kubeconfig'}",
            "--leader-elect=false", "--secure-port=0",
        ], info)
        return info

    def wait_ready(self, server, deadline):
        http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(self.pki / "ca.crt"),
                                   cert_file=str(self.pki / "admin.crt"), key_file=str(self.pki / "admin.key"))
        last = "no answer"
        while time.monotonic() < deadline:
            self.check_alive(["etcd", "kube-apiserver"])
            try:
                resp = http.request("GET", server + "/readyz", timeout=2.0, retries=False)
                if resp.status == 200:
                    return
                last = f"{resp.status} {resp.data.decode()[-300:]}"
            except urllib3.exceptions.HTTPError as exc:
                last = str(exc)
            # Process start-up has no watch to follow: probing /readyz is how envtest waits too.
            time.sleep(0.25)
        raise RuntimeError(f"kube-apiserver not ready at {server}/readyz before the deadline; last answer: {last}; "
                           f"see {self.logs / 'kube-apiserver.log'}")

    def check_alive(self, names):
        info = self.info()
        for name in names:
            proc = info["processes"].get(name)
            if proc and not alive(proc):
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited during start-up; last log lines:\n{tail}")

    def stop(self, grace=10.0):
        """SIGTERM in reverse start order, SIGKILL after ``grace``; returns {name: still_alive}."""
        if not self.info_file.exists():
            return {}
        info = self.info()
        procs = info.get("processes", {})
        for name in reversed(list(procs)):
            if alive(procs[name]):
                _signal(procs[name]["pid"], signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(p) for p in procs.values()):
            time.sleep(0.1)
        for proc in procs.values():
            if alive(proc):
                _signal(proc["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in procs.values()):
            time.sleep(0.05)
        return {name: alive(proc) for name, proc in procs.items()}


def parent_death_signal():
    """In the child: get SIGTERM when the process that started the twin dies (a killed test run)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start_time(pid):
    """Start time of a process in clock ticks since boot: tells a PID reused by another process apart."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(proc):
    """True when the recorded process is still running (and is the same process, not a reused PID)."""
    pid = proc["pid"]
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return proc.get("start") is None or _start_time(pid) == proc.get("start")


def _signal(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
