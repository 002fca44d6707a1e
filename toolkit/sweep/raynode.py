"""`python -m edgeopt.toolkit.sweep.raynode start ...`: Ray's own `ray start`, except that a node
address of 127.0.0.1 stays loopback. Ray replaces a loopback --node-ip-address with the machine's
outward address (services.resolve_ip_for_localhost), which would put a "loopback" cluster's
servers on a real interface; this keeps them on 127.0.0.1 (a cluster of nodes on one machine:
tests, trying `edgeopt sweep --address` out). Every other argument is `ray start`'s."""

from __future__ import annotations

import os
import sys

LOOPBACK = ("127.0.0.1", "localhost")


def main() -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray._private.services as services
    from ray.scripts.scripts import main as ray_main

    outward = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: "127.0.0.1" if host in LOOPBACK else outward(host)
    sys.argv[0] = "ray"
    return ray_main()


if __name__ == "__main__":
    sys.exit(main())
