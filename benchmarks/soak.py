"""Soak: a simulated exporter scraped every 0.2 s for 20 minutes; RSS over time, failures.

    python benchmarks/soak.py [--minutes 20] [--servers 200] [--interval 0.2]

Runs `python -m cph_exporter --simulate` with `--cache.ttl 2s` in a subprocess, scrapes it
as Prometheus does (OpenMetrics, gzip, the timeout header), and prints the exporter's RSS
(VmRSS, and the peak VmHWM) every 30 s. A scrape fails when it is not a 200 with `cph_up 1`.
At the end: RSS after the first two minutes against RSS at the end, and the failed scrapes.
The exit code is 1 when any scrape failed.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"
)
HEADERS = {
    "Accept": ACCEPT,
    "Accept-Encoding": "gzip",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of a process, in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cph_exporter",
            "--simulate",
            f"--simulate.servers={args.servers}",
            "--cache.ttl=2s",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    session = requests.Session()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if session.get(url + "/-/ready", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        else:
            print("the exporter did not turn ready within 60 s", file=sys.stderr)
            return 1
        start = time.monotonic()
        end = start + args.minutes * 60
        next_report = start
        scrapes = failures = 0
        settled: int | None = None  # RSS once the first two minutes are over
        print("minute  scrapes  failed  rss_kB  peak_kB", flush=True)
        while (now := time.monotonic()) < end:
            if now >= next_report:
                rss, peak = memory(process.pid)
                if settled is None and now - start >= min(120.0, args.minutes * 30):
                    settled = rss
                minute = (now - start) / 60
                print(
                    f"{minute:6.1f}  {scrapes:7d}  {failures:6d}  {rss:6d}  {peak:7d}", flush=True
                )
                next_report += 30
            scrapes += 1
            try:
                answer = session.get(url + "/metrics", headers=HEADERS, timeout=15)
                if answer.status_code != 200 or not _up_line(answer.text).endswith(" 1.0"):
                    failures += 1
                    print(f"scrape failed: {answer.status_code}", file=sys.stderr, flush=True)
            except requests.RequestException as exc:
                failures += 1
                print(f"scrape failed: {exc}", file=sys.stderr, flush=True)
            time.sleep(max(0.0, args.interval - (time.monotonic() - now)))
        rss, peak = memory(process.pid)
        print(f"end     {scrapes:7d}  {failures:6d}  {rss:6d}  {peak:7d}")
        settled = settled or rss
        print(
            f"scrapes {scrapes}, failed {failures}; RSS after the first minutes {settled} kB, "
            f"at the end {rss} kB ({rss - settled:+d} kB), peak {peak} kB"
        )
        return 1 if failures else 0
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _up_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.startswith("cph_up{")), "")


if __name__ == "__main__":
    raise SystemExit(main())
