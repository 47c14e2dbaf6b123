"""A twin of an OpenShift 4.21 cluster for rehearsing and testing confidential GPU bring-ups.

A real kube-apiserver, etcd, kube-controller-manager and kube-scheduler (Kubernetes 1.34, built
from Go modules on first use) plus Python controllers that act as the operators would, driven by a
hardware profile.
"""

# The collection's version (galaxy.yml): the twin ships with it (twin/pyproject.toml).
__version__ = "0.1.0"
KUBERNETES_VERSION = "v1.34.4"
