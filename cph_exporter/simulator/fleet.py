"""Server data for the simulator: the documented examples and a generated, seeded fleet."""

from __future__ import annotations

import random
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

SIMULATOR_PROJECT_ID = "0123456789abcdef0123456789abcdef"
SIMULATOR_REGION = "sim-region-1"

# Every documented non-normal server status plus one undocumented code, at fixed positions
# (index 1..11) so that any fleet of 12 or more servers holds each at least once.
RARE_STATUSES = (0, 1, 2, 3, 4, 8, 10, 11, 12, 13, 99)
NORMAL_STATUS = 5
ALL_STATUSES = (NORMAL_STATUS, *RARE_STATUSES)

AVAILABILITY_ZONES = tuple(f"{SIMULATOR_REGION}{suffix}" for suffix in "abc")
_MODELS = (
    ("physical.kg1.4xlarge.cp", "kg1.cp.c150.d10GPSSD.e2v2.br150"),
    ("physical.rx1.8xlarge.cp", "rx1.cp.c60.d8.e1v1"),
    ("physical.kg1.4xlarge.cg", "kg1.cg.c40.d30SSD.e1v1.old"),
)
_BANDWIDTH_SIZES = (5, 10, 50, 100, 300, 1000)  # Mbit/s
_VOLUME_SIZES = (100, 200, 600, 1000)  # GB
# Times are whole seconds since _EPOCH (UTC). Bandwidth times are rendered
# "YYYY-MM-DD HH:MM:SS" (no T, no Z) as the API really sends them, all others ISO with Z.
_EPOCH = date(2021, 1, 1)
# Addresses per network slot; servers copy 1..3 of them.
_ADDRESSES = [
    [
        {
            "intranet_ip": f"172.31.{net}.{n}",
            "access_ip": f"10.246.{net}.{n}",
            "server_ip": f"172.31.{net}.{n}",
            "public_ip": f"10.246.{net}.{n}",
        }
        for n in (10, 11, 12)
    ]
    for net in range(200)
]
_LIST_ONLY_DROPS = ("band_widths", "volumes", "security_groups", "share_volume_info", "request_id")


def list_entry(detail: dict[str, Any]) -> dict[str, Any]:
    """The view of a server that ListCloudPhoneServers gives: no bandwidths, no volumes."""
    return {k: v for k, v in detail.items() if k not in _LIST_ONLY_DROPS}


def _uuid(bits: int) -> str:
    h = f"{bits & (1 << 128) - 1:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@lru_cache(maxsize=4096)
def _day(days: int) -> str:
    return (_EPOCH + timedelta(days=days)).isoformat()


def _time(seconds: int, sep: str = "T", zone: str = "Z") -> str:
    # Formatting by hand: datetime formatting dominated generate_fleet's run time.
    day, rest = divmod(seconds, 86400)
    return f"{_day(day)}{sep}{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}{zone}"


def _status(index: int) -> int:
    return RARE_STATUSES[index - 1] if 1 <= index <= len(RARE_STATUSES) else NORMAL_STATUS


# One getrandbits() per item: generate_fleet(10000) has to stay far below a second.
def _bandwidths(rng: random.Random, created: int) -> list[dict[str, Any]]:
    result = []
    for _ in range(rng.getrandbits(2)):
        r = rng.getrandbits(256)
        at = _time(created + 60 + (r >> 250) * 60, " ", "")
        result.append(
            {
                "band_width_name": f"{r >> 128 & (1 << 122) - 1:032x}",
                "band_width_id": _uuid(r),
                "band_width_size": _BANDWIDTH_SIZES[(r >> 240) % len(_BANDWIDTH_SIZES)],
                "band_width_charge_mode": r >> 248 & 1,
                "band_width_share_type": r >> 249 & 1,
                "create_time": at,
                "update_time": at,
            }
        )
    return result


def _volumes(rng: random.Random, created: str, updated: str) -> list[dict[str, Any]]:
    result = []
    for _ in range(rng.getrandbits(2)):
        r = rng.getrandbits(256)
        result.append(
            {
                "volume_name": f"VOLUME_{r >> 128 & (1 << 122) - 1:032x}",
                "volume_id": _uuid(r),
                "volume_size": _VOLUME_SIZES[(r >> 250) % len(_VOLUME_SIZES)],
                "volume_type": ("SSD", "GPSSD")[r >> 255],
                "create_time": created,
                "update_time": updated,
            }
        )
    return result


def _server(rng: random.Random, index: int, networks: list[tuple[str, str, str]]) -> dict[str, Any]:
    r = rng.getrandbits(512)
    # Servers share a handful of VPCs, as in a real project.
    vpc_id, subnet_id, security_group = networks[index % len(networks)]
    # Index in the low bits keeps ids unique whatever the random bits are.
    server_id = f"{r >> 416:024x}{index:08x}"
    created = index * 3607 + (r >> 400) % 3600
    created_iso = _time(created)
    server_model, phone_model = _MODELS[index % len(_MODELS)]
    version = "v2" if index % 3 == 0 else "v1"
    server: dict[str, Any] = {
        "server_name": f"cph-sim-{index + 1:05d}",
        "server_id": server_id,
        "server_model_name": server_model,
        "phone_model_name": phone_model,
        "keypair_name": "KeyPair-sim",
        "status": _status(index),
        "availability_zone": AVAILABILITY_ZONES[index % len(AVAILABILITY_ZONES)],
        "create_time": created_iso,
        "update_time": _time(created + 60 + (r >> 384) % 9000 * 60),
        "resource_project_id": SIMULATOR_PROJECT_ID,
        "metadata": {"product_id": f"OFFI{index:018d}", "order_id": f"CS{index:015d}"},
        "addresses": [dict(a) for a in _ADDRESSES[index % 200][: 1 + index % 3]],
        "vpc_id": vpc_id,
        "subnet_id": subnet_id,
        "cidr": "172.31.0.0/16",
        "vpc_cidr": "172.31.0.0/16",
        "subnet_cidr": "172.31.0.0/16",
        "network_version": version,
        "enterprise_project_id": "0",
        "security_groups": [security_group] if version == "v2" else [],
    }
    volumes_updated = _time(created + 720)
    # Every tenth server lacks the key (as the first documented example), another tenth has null.
    for key, items, slot in (
        ("band_widths", _bandwidths(rng, created), index % 10),
        ("volumes", _volumes(rng, created_iso, volumes_updated), (index + 5) % 10),
    ):
        if slot != 3:
            server[key] = None if slot == 7 else items
    return server


def generate_fleet(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` servers as GetCloudPhoneServerDetail returns them, the same for the same seed.

    Index 0 and 12+ are normal (status 5); indexes 1..11 hold RARE_STATUSES in order.
    `band_widths` is absent when index % 10 == 3 and null when 7; `volumes` likewise with
    (index + 5) % 10.
    """
    rng = random.Random(seed)
    networks = [(_uuid(r), _uuid(r >> 128), _uuid(r >> 256)) for r in _draws(rng, 7, 384)]
    return [_server(rng, index, networks) for index in range(count)]


def _draws(rng: random.Random, count: int, bits: int) -> list[int]:
    return [rng.getrandbits(bits) for _ in range(count)]


def documented_examples() -> list[dict[str, Any]]:
    """The two example responses of the GetCloudPhoneServerDetail page, data unchanged."""
    first: dict[str, Any] = {
        "server_name": "cph-418540-1620-40-old-1",
        "availability_zone": "br-iaas-odin1a",
        "addresses": [
            {
                "public_ip": "10.246.xxx.xxx",
                "server_ip": "172.31.22.245",
                "intranet_ip": "172.31.22.245",
                "access_ip": "10.246.xxx.xxx",
            }
        ],
        "metadata": {"product_id": "OFFI451249149551403012", "order_id": "CS2007271727F9XJE"},
        "create_time": "2020-01-01T00:00:00Z",
        "vpc_id": "12021c68-730f-41fa-9884-11c616f4c9ad",
        "phone_model_name": "kg1.cg.c40.d30SSD.e1v1.old",
        # The page repeats subnet_cidr with the same value; a dict keeps one.
        "subnet_cidr": "172.31.0.0/16",
        "keypair_name": "KeyPair-1230",
        "resource_project_id": "06a5b529fa80d28b2f53c014024bed44",
        "server_id": "6edb89150bc742aa81fc8ac4ff047297",
        "server_model_name": "physical.kg1.4xlarge.cg",
        "update_time": "2020-01-01T00:00:00Z",
        "cidr": "172.31.0.0/16",
        "vpc_cidr": "172.31.0.0/16",
        "subnet_id": "5784d2fe-fefd-42f0-a7f1-e88454d8bc0f",
        "request_id": "91d5bf46a817466daa25fc5824ab9717",
        "status": 5,
        "network_version": "v1",
        "enterprise_project_id": "0",
        "security_groups": [],
    }
    return [first, _custom_network_example()]


def _custom_network_example() -> dict[str, Any]:
    def volume(name: str, volume_id: str, updated: str) -> dict[str, Any]:
        return {
            "volume_name": f"VOLUME_{name}",
            "volume_id": volume_id,
            "volume_size": 600,
            "volume_type": "SSD",
            "create_time": "2021-02-18T11:36:20Z",
            "update_time": updated,
        }

    def bandwidth(name: str, bandwidth_id: str, at: str) -> dict[str, Any]:
        return {
            "band_width_name": name,
            "band_width_id": bandwidth_id,
            "band_width_size": 300,
            "band_width_charge_mode": 1,
            "band_width_share_type": 0,
            "create_time": at,
            "update_time": at,
        }

    def address(server_ip: str, public_ip: str) -> dict[str, str]:
        return {
            "intranet_ip": server_ip,
            "access_ip": public_ip,
            "server_ip": server_ip,
            "public_ip": public_ip,
        }

    return {
        "server_name": "cph-2ykg-asdv-2",
        "server_id": "95bf815ae612435d9ab2af7ad91dcaab",
        "server_model_name": "physical.kg1.4xlarge.cp",
        "phone_model_name": "kg1.cp.c150.d10GPSSD.e2v2.br150",
        "keypair_name": "KeyPair-wangnan",
        "status": 5,
        "availability_zone": "br-iaas-odin1a",
        "create_time": "2021-02-18T11:36:20Z",
        "update_time": "2021-02-18T11:50:14Z",
        "resource_project_id": "06a5b529fa80d28b2f53c014024bed44",
        "metadata": {"product_id": "OFFI454827367575412738", "order_id": "CS2102181935Q80Q9"},
        "volumes": [
            volume(
                "519ebd1fff7e4bd78af1c4ebe5d9477b",
                "2a5dae30-8d28-4759-8d2c-5081237ea3cb",
                "2021-02-18T11:48:41Z",
            ),
            volume(
                "ad0221b2e22c41d295831133491dd0d2",
                "8905aa69-51a9-4439-add5-5c8fb8aceeab",
                "2021-02-18T11:49:08Z",
            ),
            volume(
                "88ac4752585c49dea6031931e60aebb4",
                "2673a67b-4154-4e24-a107-1c41bfb7efc4",
                "2021-02-18T11:48:41Z",
            ),
        ],
        "addresses": [
            address("192.168.0.74", "10.246.169.234"),
            address("192.168.0.120", "10.246.168.135"),
        ],
        "band_widths": [
            bandwidth(
                "d2d5f7f49e2e409283d41cc0a63cacee",
                "8b85d44b-ac6f-48fb-bbab-e876e9c3502a",
                "2021-02-18 11:48:40",
            ),
            bandwidth(
                "5435eeaa669d4b84aea25e404cf3acf1",
                "fa788f38-7198-44ec-867b-93d49e2c5c14",
                "2021-02-18 11:48:38",
            ),
        ],
        "vpc_id": "4fdf12dc-7a53-489e-b448-32e0eed99ea7",
        "subnet_id": "99462cb1-511c-4b3e-8f09-c80565304843",
        "cidr": "172.31.0.0/16",
        "vpc_cidr": "172.31.0.0/16",
        "subnet_cidr": "172.31.0.0/16",
        "network_version": "v2",
        "enterprise_project_id": "0",
        "security_groups": ["7f46bf9e-9050-48d6-9034-65711f9595f8"],
        "request_id": "e09b46f28bfa4ee58c3cbd0075db48fc",
    }
