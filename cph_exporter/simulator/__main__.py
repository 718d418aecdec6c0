"""Run the CPH API simulator: `python -m cph_exporter.simulator --servers 500`."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from types import FrameType

from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_REGION,
    SIMULATOR_SECRET_KEY,
    Faults,
    project_simulator,
)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:0")
    return host.strip("[]") or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cph_exporter.simulator", description="Serve a simulated CPH API."
    )
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 0), metavar="HOST:PORT")
    parser.add_argument("--servers", type=int, default=100, help="generated servers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", action="store_true", help="add the documented examples")
    parser.add_argument("--phones", action="store_true", help="serve seeded phones per server")
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--throttle-every", type=int, default=0, metavar="K")
    parser.add_argument("--retry-after", default=None, metavar="VALUE")
    parser.add_argument(
        "--control",
        action="store_true",
        help='accept POST /_control/servers/{id} {"status": N} and POST /_control/faults '
        "from loopback clients, to change the fleet while it runs",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    faults = Faults(args.latency, args.throttle_every, args.retry_after)
    host, port = args.listen
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    simulator = project_simulator(
        args.servers,
        args.seed,
        faults,
        host,
        port,
        examples=args.examples,
        phones=args.phones,
        control=args.control,
    )
    with simulator as sim:
        # Fixed simulator credentials, not secrets: printing them is the point.
        print(sim.url, flush=True)
        print(
            f"HUAWEICLOUD_SDK_AK={SIMULATOR_ACCESS_KEY}\n"
            f"HUAWEICLOUD_SDK_SK={SIMULATOR_SECRET_KEY}\n"
            f"HUAWEICLOUD_SDK_PROJECT_ID={SIMULATOR_PROJECT_ID}\n"
            f"region={SIMULATOR_REGION} servers={sim.server_count}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way out
            stopping.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
