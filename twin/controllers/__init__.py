"""Operator twins are plug-ins: each module here has ``register(manager, world)``.

The list is the one place that says which twins run; later twins (OLM, NFD, MCO, GPU operator,
OSC, Trustee) add their module name to it.
"""

import importlib

PLUGINS = [
    "twin.controllers.faults",
    "twin.controllers.route",
]


def register_all(manager, world):
    for name in PLUGINS:
        importlib.import_module(name).register(manager, world)
