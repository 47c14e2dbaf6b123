"""The twin's controller process: the kubelet twin and every operator twin, in one process.

Started by ``twin up`` (``python -m twin.runtime --state DIR``); stopped by PID with ``twin down``.
"""

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

import yaml

from . import kubelet
from .controller import Manager
from .controllers import register_all
from .kube import Kube
from .world import World


def build(state: Path):
    info = json.loads((state / "cluster.json").read_text())
    profile = yaml.safe_load((state / "profile.yaml").read_text())
    pki = state / "pki"
    kube = Kube(info["server"], pki / "ca.crt", pki / "twin.crt", pki / "twin.key", user_agent="twin-controllers")
    world = World(profile, kube, state)
    return info, world


def main(argv=None):
    parser = argparse.ArgumentParser(prog="twin.runtime")
    parser.add_argument("--state", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    info, world = build(args.state)
    manager = Manager(world)
    stop = manager.stop
    kubelet.start(manager, world, args.state, info["ports"]["kubelet"], stop)
    register_all(manager, world)
    manager.start()
    world._snapshot()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    logging.getLogger("twin").info("twin controllers running (%d controllers)", len(manager.controllers))
    done.wait()
    manager.shutdown()


if __name__ == "__main__":
    main()
