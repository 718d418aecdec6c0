"""Processes a test starts (Prometheus, Alertmanager, the exporter) and waiting for them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests

REPO = Path(__file__).resolve().parents[2]
SETTLE_TIMEOUT = 60.0  # seconds to wait for a target, an alert, a notification


T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = SETTLE_TIMEOUT) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (requests.RequestException, ValueError) as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def start(args: list[str], log: Path, ready_url: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{args[0]} exited with {proc.returncode}:\n{tail(log)}")
        return requests.get(ready_url, timeout=2).status_code == 200

    try:
        wait_for(f"{ready_url}\n{log}", ready, timeout=30)
    except BaseException:
        stop(proc)
        raise
    return proc
