"""Cloud phones for the simulated servers: a seeded handful per server, in every state."""

from __future__ import annotations

import random
from typing import Any

# Every documented phone status plus one undocumented code (99); running dominates.
PHONE_STATUSES = (0, 1, 2, 3, 4, 6, 7, 8, -5, -6, -7, -8, -9, 99)
RUNNING = 2
_IMAGES = (("img0001", "1.0.0"), ("img0002", "2.3.1"), ("img0003", "2.4.0"))


def generate_phones(servers: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """ListCloudPhones entries for `servers`: 0-6 phones each, deterministic by seed.

    The n-th phone overall takes status PHONE_STATUSES[n] for the first len(PHONE_STATUSES)
    phones, so any fleet with that many phones holds every status; later ones mostly run.
    """
    rng = random.Random(seed)
    phones: list[dict[str, Any]] = []
    for server in servers:
        for slot in range(rng.randint(0, 6)):
            index = len(phones)
            if index < len(PHONE_STATUSES):
                status = PHONE_STATUSES[index]
            else:
                status = RUNNING if rng.random() < 0.85 else rng.choice(PHONE_STATUSES)
            image_id, image_version = rng.choice(_IMAGES)
            phones.append(
                {
                    "phone_name": f"{server['server_name']}-p{slot}",
                    "server_id": server["server_id"],
                    "phone_id": f"{rng.getrandbits(128):032x}",
                    "phone_model_name": server.get("phone_model_name", ""),
                    "image_id": image_id,
                    "image_version": image_version,
                    "vnc_enable": "false",
                    "status": status,
                    "type": 0,
                    "imei": f"86{rng.getrandbits(40):013d}"[:15],
                    "traffic_type": "routing",
                    "volume_mode": 0,
                    "availability_zone": server.get("availability_zone", ""),
                    "metadata": {"order_id": "", "product_id": ""},
                    "has_encrypt": False,
                    "create_time": server.get("create_time", ""),
                    "update_time": server.get("update_time", ""),
                }
            )
    return phones


def simulated_project(
    count: int, seed: int = 0, examples: bool = True
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The servers (the documented examples first, then `count` generated) and their phones:
    one recipe for `--simulate` and `python -m cph_exporter.simulator`."""
    from cph_exporter.simulator.fleet import documented_examples, generate_fleet

    servers = (documented_examples() if examples else []) + generate_fleet(count, seed=seed)
    return servers, generate_phones(servers, seed=seed)
