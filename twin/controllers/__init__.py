"""Operator twins are plug-ins: each module here has ``register(manager, world)``.

A plug-in may also have ``seed(kube, profile)``: objects that exist before the collection runs
(catalog contents, rendered MachineConfigs…), created by ``twin up`` before it reports ready.

The list is the one place that says which twins run; later twins (OLM, NFD, MCO, GPU operator,
OSC, Trustee) add their module name to it.
"""

import importlib

PLUGINS = [
    "twin.controllers.faults",
    "twin.controllers.route",
    "twin.controllers.router",
    "twin.controllers.trustee",
    "twin.controllers.olm",
    "twin.controllers.nfd",
    "twin.controllers.mco",
    "twin.controllers.probe",
    "twin.controllers.gpu_operator",
    "twin.controllers.osc",
]


def register_all(manager, world):
    for name in PLUGINS:
        importlib.import_module(name).register(manager, world)


def seed_all(kube, profile):
    for name in PLUGINS:
        module = importlib.import_module(name)
        if hasattr(module, "seed"):
            module.seed(kube, profile)
