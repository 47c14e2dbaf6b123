"""Plug-in: the router twin serving passthrough Routes (``twin.router``) and its DNS entry (``twin.dns``).

The route admitter (``route.py``) gives Routes their host and Admitted status; this makes those
hosts answer. At start it listens on a loopback port and writes ``*.<apps domain>`` → that port into
the twin's zone, so clients (tests, and other twins once linked) can reach every admitted route.
"""

import logging

from .. import dns
from ..router import Router

log = logging.getLogger("twin.router")


def register(manager, world):
    router = Router(manager)
    router.start()
    domain = world.profile["openshift"]["apps_domain"]
    address = f"{router.address[0]}:{router.address[1]}"
    dns.publish(world.kube, {f"*.{domain}": address})
    log.info("router: passthrough routes of *.%s served on %s", domain, address)
    world.router = router
