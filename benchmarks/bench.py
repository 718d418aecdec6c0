"""Fleet-scale benchmark: the exporter against the simulator, each figure beside its baseline.

    python benchmarks/bench.py                      # N = 100, 1,000 and 10,000
    python benchmarks/bench.py --servers 100 1000   # quicker

For each N, the simulator (N servers, --latency per API call) and the exporter run as two
subprocesses, so the simulator's CPU is not charged to the exporter and the exporter's
peak RSS (VmHWM) is its own; this script is the scraping client. It measures, with the
baseline measured in the same run:

- cold scrape: from the exporter's readiness to the first complete scrape, vs the time a
  sequential client needs, (ceil(N/100) + N) x latency;
- warm scrape median vs the same bytes served by `python -m http.server` from a file, and
  vs rendering them with prometheus_client's generate_latest from a plain registry;
- API calls per refresh of an unchanged fleet (two refreshes after the TTL) vs the
  ceil(N/100) list calls any refresh must make;
- the exporter's peak RSS;
- the API path alone, in a process of its own: client CPU per API call in a cold refresh
  (the exporter's client and refresher, records built) and calls/s at concurrency 16 and
  64, each vs a bare keep-alive `http.client` pool making the same signed GETs and parsing
  the same JSON; the refresh peak (VmHWM growth) vs the retained growth;
- a restart over the unchanged fleet with --cache.dir: detail calls at start vs the
  ceil(N/100) list calls of the list-only floor.

Serving figures (`serving_*` below), each beside its floor measured in the same run:

- CPU to render a form not yet rendered (in this process, fresh caches): plain text as an
  identity client gets it (written, compressed to be held, inflated to be sent) and
  OpenMetrics as Prometheus gets it (gzip), vs `generate_latest` of the same families (their
  samples built beforehand, as a collector of prometheus_client's own families has them);
- exporter CPU per warm gzip scrape (from /proc/PID/stat over many scrapes) vs the CPU of
  `python -m http.server` serving the same gzip bytes from a file;
- the exporter's peak RSS after the cold refresh and after each further form was scraped,
  beside the retained size of the snapshot's records (tracemalloc, while parsing them).

The rate cap is off by default (--rate 0): the simulator does not throttle, and the cap
would make a cold refresh take N/rate seconds by design. Benchmarks are not tests: nothing
here asserts; the design targets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import http.client
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cph_exporter.simulator import (  # noqa: E402  (after the path fix, for a plain checkout)
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_REGION,
    SIMULATOR_SECRET_KEY,
)

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(port: int, path: str = "/metrics", headers: dict[str, str] | None = None) -> bytes:
    """One GET on a fresh connection, body read whole: the same client for every server."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
        return body
    finally:
        conn.close()


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(port: int, proc: subprocess.Popen[str], path: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{output}")
        with contextlib.suppress(OSError, RuntimeError, http.client.HTTPException):
            fetch(port, path)
            return
        time.sleep(0.005)
    raise RuntimeError(f"port {port} not ready after 60s")


def peak_rss(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) * 1024 / MB if match else float("nan")


def api_calls(port: int) -> dict[str, float]:
    """cph_exporter_api_requests_total by operation, from the exporter itself."""
    text = fetch(port, headers={"Accept-Encoding": "identity"}).decode()
    calls: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "cph_exporter_api_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    op = sample.labels["operation"]
                    calls[op] = calls.get(op, 0) + sample.value
    return calls


def servers_in(body: bytes) -> int:
    return body.count(b"\ncph_server_status{")


class Families(Collector):
    """A plain collector yielding already-built families, as any custom collector does."""

    def __init__(self, text: str) -> None:
        self._families = list(text_string_to_metric_families(text))

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


@dataclass
class Result:
    servers: int
    latency: float
    cold: float
    sequential: float
    warm: float
    warm_gzip: float
    static: float
    generate_latest: float
    body_mb: float
    gzip_mb: float
    list_calls: float
    detail_calls: float
    floor: int
    rss_mb: float
    serving: ServingFigures | None = None

    def lines(self) -> list[str]:
        n = self.servers
        ok = {True: "holds", False: "MISSED"}
        lines = [
            f"N={n:,} servers, API latency {self.latency * 1000:.0f} ms, "
            f"{self.body_mb:.1f} MB per scrape ({self.gzip_mb:.2f} MB gzipped)",
            f"  cold scrape          {self.cold:8.2f} s   vs sequential client "
            f"{self.sequential:8.2f} s  = {self.cold / self.sequential:.3f}x",
            f"  warm scrape median   {self.warm * 1000:8.1f} ms  vs static file server "
            f"{self.static * 1000:8.1f} ms = {self.warm / self.static:.2f}x",
            f"                                     vs generate_latest      "
            f"{self.generate_latest * 1000:8.1f} ms = {self.warm / self.generate_latest:.3f}x",
            f"  warm gzip scrape     {self.warm_gzip * 1000:8.1f} ms  (what Prometheus asks for)",
            f"  API calls / refresh  list {self.list_calls:.0f}, detail {self.detail_calls:.0f}"
            f"  vs floor ceil(N/100) = {self.floor} list calls",
            f"  peak RSS             {self.rss_mb:8.1f} MB",
        ]
        if n >= 1000:
            lines.append("  design targets:")
            if n == 1000:
                lines.append(
                    f"    cold <= 0.25x sequential: {ok[self.cold <= 0.25 * self.sequential]}; "
                    f"<= N/10 detail calls over two refreshes: "
                    f"{ok[2 * self.detail_calls <= n / 10]}; "
                    f"RSS < 150 MB: {ok[self.rss_mb < 150]}"
                )
            else:
                lines.append(f"    RSS < 400 MB: {ok[self.rss_mb < 400]}")
            lines.append(f"    warm within 3x static: {ok[self.warm <= 3 * self.static]}")
        if self.serving is not None:
            lines += self.serving.lines(n)
        return lines

    def row(self) -> str:
        return (
            f"| {self.servers:,} | {self.cold:.2f} s | {self.sequential:.2f} s "
            f"({self.cold / self.sequential:.3f}x) | {self.warm * 1000:.1f} ms "
            f"| {self.static * 1000:.1f} ms ({self.warm / self.static:.2f}x) "
            f"| {self.generate_latest * 1000:.0f} ms | {self.warm_gzip * 1000:.1f} ms "
            f"| {self.list_calls:.0f} + {self.detail_calls:.0f} (floor {self.floor}) "
            f"| {self.rss_mb:.0f} MB |"
        )


TABLE_HEADER = (
    "| N | cold scrape | sequential client | warm scrape (median) | static file "
    "| generate_latest | warm gzip scrape | API calls per unchanged refresh: list + detail "
    "| exporter peak RSS |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


# --- serving: render CPU, warm scrape CPU, peak RSS by phase ------------------------------

FORMS = (  # (name, Accept, Accept-Encoding), in the order the RSS phases scrape them
    ("text", "text/plain; version=0.0.4", "identity"),
    ("text+gzip", "text/plain; version=0.0.4", "gzip"),
    ("openmetrics", PROMETHEUS_ACCEPT, "identity"),
)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape_cpu(pid: int, port: int, headers: dict[str, str], repeat: int) -> float:
    """CPU the serving process spends per scrape, over `repeat` scrapes."""
    before = cpu_seconds(pid)
    for _ in range(repeat):
        fetch(port, headers=headers)
    return (cpu_seconds(pid) - before) / repeat


@dataclass
class ServingFigures:
    render_text: float = math.nan  # CPU seconds, a new plain-text form
    render_gzip: float = math.nan  # a new OpenMetrics gzip form
    write_only: float = math.nan  # the families collected and written, nothing compressed
    library_text: float = math.nan  # generate_latest of the same families
    library_openmetrics: float = math.nan
    retained_mb: float = math.nan
    gzip_scrape_cpu: float = math.nan  # exporter CPU per warm gzip scrape
    static_gzip_cpu: float = math.nan  # http.server CPU per scrape of the same bytes
    rss_by_phase: list[tuple[str, float]] | None = None

    def lines(self, n: int) -> list[str]:
        ok = {True: "holds", False: "MISSED"}
        text_ratio = self.render_text / self.library_text
        gzip_ratio = self.render_gzip / self.library_openmetrics
        lines = [
            f"  render a new form    text {self.render_text:6.3f} s CPU vs generate_latest "
            f"{self.library_text:6.3f} s = {text_ratio:.3f}x",
            f"                       openmetrics+gzip {self.render_gzip:6.3f} s vs "
            f"{self.library_openmetrics:6.3f} s = {gzip_ratio:.3f}x "
            f"(collect + write alone {self.write_only:.3f} s)",
            f"  warm gzip scrape CPU {self.gzip_scrape_cpu * 1000:6.2f} ms vs static server "
            f"{self.static_gzip_cpu * 1000:6.2f} ms = "
            f"{self.gzip_scrape_cpu / self.static_gzip_cpu:.2f}x",
            "  peak RSS by phase    "
            + ", ".join(f"{phase} {rss:.0f} MB" for phase, rss in self.rss_by_phase or [])
            + f"  (retained records {self.retained_mb:.1f} MB)",
        ]
        if n >= 10_000:
            peak = max(rss for _, rss in self.rss_by_phase or [("", math.nan)])
            budget = 190 if n <= 10_000 else 450 * n / 30_000
            lines.append(
                f"    render <= 0.25x generate_latest: text {ok[text_ratio <= 0.25]}, "
                f"openmetrics+gzip {ok[gzip_ratio <= 0.25]}; peak RSS <= {budget:.0f} MB: "
                f"{ok[peak <= budget]}"
            )
        return lines


def serving_snapshot(servers: int) -> tuple[tuple[Any, ...], float]:
    """The views of a simulated fleet as the exporter holds it, and the records' size in MB."""
    from cph_exporter.cph.models import parse_details, parse_server
    from cph_exporter.refresh.snapshot import ServerRecord, Snapshot, Watched
    from cph_exporter.refresh.targets import TargetView
    from cph_exporter.simulator import generate_fleet

    answers = json.dumps(generate_fleet(servers))  # the records keep strings of the answers
    tracemalloc.start()
    parsed = json.loads(answers)
    records = tuple(ServerRecord(parse_server(a), parse_details(a)) for a in parsed)
    del parsed
    retained = tracemalloc.get_traced_memory()[0] / MB
    tracemalloc.stop()
    watched = Watched((), True, (), True, (), True)
    snapshot = Snapshot(records, True, 1.0, 0.1, 1.0, 1.0, generation=1, phones=(),
                        phones_up=True, watched=watched)  # fmt: skip
    return (TargetView(SIMULATOR_REGION, SIMULATOR_PROJECT_ID, snapshot),), retained


def serving_collectors(views: Any) -> list[Collector]:
    """The snapshot collectors the exporter runs by default."""
    from cph_exporter.metrics.encode_servers import EncodeServerCollector
    from cph_exporter.metrics.phone_capacity import PhoneCapacityCollector
    from cph_exporter.metrics.phones import PhoneCollector
    from cph_exporter.metrics.scheduled_events import ScheduledEventCollector
    from cph_exporter.metrics.servers import ServerCollector

    return [
        ServerCollector(lambda: views),
        PhoneCollector(lambda: views, False),
        ScheduledEventCollector(lambda: views),
        EncodeServerCollector(lambda: views),
        PhoneCapacityCollector(lambda: views),
    ]


class Built(Collector):
    """Families with their samples built: what generate_latest reads from any collector."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = []
        for family in families:
            plain = Metric(family.name, family.documentation, family.type)
            plain.samples = family.samples
            self._families.append(plain)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def least_cpu(action: Callable[[], object], repeat: int) -> float:
    """The least CPU time of `repeat` runs: the machine is shared, noise only adds."""
    best = math.inf
    for _ in range(repeat):
        started = time.process_time()
        action()
        best = min(best, time.process_time() - started)
    return best


def serving_render(servers: int, figures: ServingFigures) -> None:
    from prometheus_client.openmetrics.exposition import generate_latest as generate_om

    from cph_exporter.http.exposition import Exposition
    from cph_exporter.http.formats import TEXT

    views, figures.retained_mb = serving_snapshot(servers)
    repeat = 3 if servers >= 10_000 else 5
    built = Built([f for c in serving_collectors(views) for f in c.collect()])
    figures.library_text = least_cpu(lambda: generate_latest(built), repeat)
    figures.library_openmetrics = least_cpu(lambda: generate_om(built), repeat)

    def new_form(accept: str | None, gzip_ok: bool) -> Callable[[], object]:
        def render() -> object:
            exposition = Exposition(serving_collectors, CollectorRegistry(auto_describe=False))
            # New views, as a refresh makes them: nothing of an earlier render is reused.
            fresh = tuple(dataclasses.replace(view) for view in views)
            return sum(map(len, exposition.body(fresh, accept, gzip_ok).parts))

        return render

    figures.render_text = least_cpu(new_form(None, False), repeat)
    figures.render_gzip = least_cpu(new_form(PROMETHEUS_ACCEPT, True), repeat)

    def write_only() -> object:
        fresh = tuple(dataclasses.replace(view) for view in views)
        families = (f for c in serving_collectors(fresh) for f in c.collect())
        return sum(len(piece) for family in families for piece in TEXT.write_family(family))

    figures.write_only = least_cpu(write_only, repeat)


def serving_rss_phases(port: int, pid: int, cold_rss: float) -> list[tuple[str, float]]:
    """Peak RSS after the cold refresh (and its OpenMetrics gzip scrape), then after each form."""
    phases = [("cold+openmetrics+gzip", cold_rss)]
    for name, accept, encoding in FORMS:
        fetch(port, headers={"Accept": accept, "Accept-Encoding": encoding})
        phases.append((name, peak_rss(pid)))
    return phases


def serving_static_gzip_cpu(zipped: bytes, repeat: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "metrics").write_bytes(zipped)
        port = free_port()
        args = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]
        with process([*args, "--directory", tmp, str(port)]) as static_server:
            wait_ready(port, static_server, "/metrics")
            return scrape_cpu(static_server.pid, port, {}, repeat)


def run_one(servers: int, args: argparse.Namespace) -> Result:
    latency = args.latency
    # Long enough for the warm phase: at 10,000 servers, 10 warm scrapes of each form take
    # well over 30 s on 2 shared cores, and a refresh must not overlap them.
    ttl = args.ttl if args.ttl is not None else max(30.0, 12 * servers / 1000)
    sim_args = [sys.executable, "-m", "cph_exporter.simulator", "--servers", str(servers)]
    sim_args += ["--latency", str(latency), "--listen", "127.0.0.1:0"]
    with process(sim_args) as sim:
        assert sim.stdout is not None
        url = sim.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"simulator did not start: {url}{sim.stdout.read()}")
        port = free_port()
        exporter_args = [sys.executable, "-m", "cph_exporter", "--log.level", "warn"]
        exporter_args += ["--cph.region", SIMULATOR_REGION, "--cph.project-id"]
        exporter_args += [SIMULATOR_PROJECT_ID, "--cph.endpoint", url]
        exporter_args += ["--web.listen-address", f"127.0.0.1:{port}"]
        exporter_args += ["--cache.ttl", f"{ttl}s", "--cache.max-stale", "1h"]
        exporter_args += ["--cph.concurrency", str(args.concurrency)]
        exporter_args += ["--cph.max-requests-per-second", str(args.rate)]
        exporter_args += ["--cph.refresh-timeout", "10m"]
        env = dict(os.environ)
        env |= {"HUAWEICLOUD_SDK_AK": SIMULATOR_ACCESS_KEY}
        env |= {"HUAWEICLOUD_SDK_SK": SIMULATOR_SECRET_KEY}
        with process(exporter_args, env) as exporter:
            wait_ready(port, exporter, "/-/healthy")  # its first refresh starts at startup
            prometheus = {
                "Accept": PROMETHEUS_ACCEPT,
                "Accept-Encoding": "gzip",
                "X-Prometheus-Scrape-Timeout-Seconds": "600",
            }
            started = time.perf_counter()
            first = fetch(port, headers=prometheus)
            cold = time.perf_counter() - started
            cold_done = time.monotonic()
            if servers_in(b"\n" + gzip.decompress(first)) != servers:
                raise RuntimeError("the cold scrape did not list every server")
            serving = ServingFigures()
            serving.rss_by_phase = serving_rss_phases(port, exporter.pid, peak_rss(exporter.pid))

            identity = {"Accept-Encoding": "identity"}
            body = fetch(port, headers=identity)  # renders the text format once
            warm = statistics.median(timed(lambda: fetch(port, headers=identity), args.repeat))
            zipped = fetch(port, headers=prometheus)
            warm_gzip = statistics.median(
                timed(lambda: fetch(port, headers=prometheus), args.repeat)
            )
            scrapes = max(50, 10 * args.repeat)
            serving.gzip_scrape_cpu = scrape_cpu(exporter.pid, port, prometheus, scrapes)
            if time.monotonic() - cold_done >= ttl:
                print(f"  (warm scrapes outlasted the {ttl:.0f}s TTL: raise --ttl)", flush=True)

            # Two refreshes of the unchanged fleet, each after the TTL ran out.
            before = api_calls(port)
            for _ in range(2):
                time.sleep(ttl + 0.5)
                fetch(port, headers=prometheus)
            after = api_calls(port)
            delta = {op: after.get(op, 0) - before.get(op, 0) for op in after}
            rss = peak_rss(exporter.pid)

    # Baselines, with the exporter and simulator gone: the same bytes from a static server,
    # and rendered by generate_latest from a plain registry.
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "metrics").write_bytes(body)
        static_port = free_port()
        static_args = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]
        static_args += ["--directory", tmp, str(static_port)]
        with process(static_args) as static_server:
            wait_ready(static_port, static_server, "/metrics")
            static = statistics.median(timed(lambda: fetch(static_port), args.repeat))
    serving.static_gzip_cpu = serving_static_gzip_cpu(zipped, scrapes)
    serving_render(servers, serving)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(body.decode()))
    render_repeat = max(1, min(args.repeat, 5 if servers >= 10_000 else args.repeat))
    rendered = statistics.median(timed(lambda: generate_latest(registry), render_repeat))

    return Result(
        servers=servers,
        latency=latency,
        cold=cold,
        sequential=(math.ceil(servers / 100) + servers) * latency,
        warm=warm,
        warm_gzip=warm_gzip,
        static=static,
        generate_latest=rendered,
        body_mb=len(body) / MB,
        gzip_mb=len(zipped) / MB,
        list_calls=delta.get("ListCloudPhoneServers", 0) / 2,
        detail_calls=delta.get("GetCloudPhoneServerDetail", 0) / 2,
        floor=math.ceil(servers / 100),
        rss_mb=rss,
        serving=serving,
    )


# ---------------------------------------------------------------------------------------------
# The API path alone, in a process of its own (`--measure lean|bare URL N CONCURRENCY`)


def process_cpu() -> float:
    return time.process_time()


def rss_mb(field: str = "VmRSS") -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) * 1024 / MB if match else float("nan")


def measure_lean(url: str, servers: int, concurrency: int) -> dict[str, float]:
    """A cold refresh by the exporter's own client and refresher: list, details, records."""
    from prometheus_client import CollectorRegistry as Registry

    from cph_exporter.cph.client import CphClient
    from cph_exporter.cph.request_metrics import ApiMetrics
    from cph_exporter.cph.signing import AkSkAuth
    from cph_exporter.credentials.values import Credentials
    from cph_exporter.refresh.refresher import Refresher

    creds = Credentials(SIMULATOR_ACCESS_KEY, SIMULATOR_SECRET_KEY)
    metrics = ApiMetrics(Registry())
    client = CphClient(
        url,
        SIMULATOR_PROJECT_ID,
        AkSkAuth(lambda: creds, project_id=SIMULATOR_PROJECT_ID),
        metrics=metrics,
        pool_size=concurrency,
    )
    refresher = Refresher(
        client,
        ttl=3600,
        max_stale=7200,
        detail_max_age=3600,
        refresh_timeout=1800,
        concurrency=concurrency,
        metrics=metrics,
    )
    before_rss = rss_mb()
    cpu, wall = process_cpu(), time.perf_counter()
    snapshot = refresher.snapshot(timeout=1800)
    cpu, wall = process_cpu() - cpu, time.perf_counter() - wall
    if len(snapshot.servers) != servers or snapshot.servers_without_details:
        raise RuntimeError("the lean refresh did not fetch every server")
    calls = math.ceil(servers / 100) + servers
    result = {
        "cpu_per_call": cpu / calls,
        "calls_per_s": calls / wall,
        "peak_growth_mb": rss_mb("VmHWM") - before_rss,
        "retained_growth_mb": rss_mb() - before_rss,
    }
    refresher.close()
    client.close()
    return result


def measure_bare(url: str, servers: int, concurrency: int) -> dict[str, float]:
    """The floor: a bare keep-alive http.client pool making the same signed GETs, each answer
    parsed as JSON, and nothing else."""
    import concurrent.futures
    import json
    import queue
    from urllib.parse import urlsplit

    from cph_exporter.cph.signing import AkSkAuth, canonical_uri
    from cph_exporter.credentials.values import Credentials

    creds = Credentials(SIMULATOR_ACCESS_KEY, SIMULATOR_SECRET_KEY)
    auth = AkSkAuth(lambda: creds, project_id=SIMULATOR_PROJECT_ID)
    parts = urlsplit(url)
    host = parts.netloc
    base = f"/v1/{SIMULATOR_PROJECT_ID}/cloud-phone"
    pool: queue.SimpleQueue[http.client.HTTPConnection] = queue.SimpleQueue()
    for _ in range(concurrency):
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        conn.connect()  # connected before the clock starts: the floor pays no handshake
        pool.put(conn)

    def get(path: str, query: list[tuple[str, str]]) -> dict[str, object]:
        conn = pool.get()
        try:
            target = path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
            conn.request("GET", target, headers=auth.sign_get(host, canonical_uri(path), query))
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"bare pool: HTTP {response.status}")
            loaded: dict[str, object] = json.loads(body)
            return loaded
        finally:
            pool.put(conn)

    before_rss = rss_mb()
    cpu, wall = process_cpu(), time.perf_counter()
    ids: list[str] = []
    for offset in range(0, servers, 100):
        page = get(base + "/servers", [("limit", "100"), ("offset", str(offset))])["servers"]
        ids += [entry["server_id"] for entry in page]  # type: ignore[attr-defined]
    with concurrent.futures.ThreadPoolExecutor(concurrency) as workers:
        for _ in workers.map(lambda sid: get(base + "/servers/" + sid, []), ids):
            pass
    cpu, wall = process_cpu() - cpu, time.perf_counter() - wall
    calls = math.ceil(servers / 100) + len(ids)
    return {
        "cpu_per_call": cpu / calls,
        "calls_per_s": calls / wall,
        "peak_growth_mb": rss_mb("VmHWM") - before_rss,
        "retained_growth_mb": rss_mb() - before_rss,
    }


def measured(kind: str, url: str, servers: int, concurrency: int) -> dict[str, float]:
    args = [sys.executable, str(Path(__file__).resolve()), "--measure", kind, url]
    args += [str(servers), str(concurrency)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"--measure {kind} failed:\n{done.stdout}{done.stderr}")
    figures: dict[str, float] = __import__("json").loads(done.stdout.splitlines()[-1])
    return figures


@dataclass
class ApiResult:
    servers: int
    lean: dict[int, dict[str, float]]  # by concurrency
    bare: dict[int, dict[str, float]]
    restart_list_calls: float
    restart_detail_calls: float
    restart_seconds: float
    cold_seconds: float

    def lines(self) -> list[str]:
        n = self.servers
        ok = {True: "holds", False: "MISSED"}
        lines = []
        for conc in sorted(self.lean):
            lean, bare = self.lean[conc], self.bare[conc]
            ratio = lean["cpu_per_call"] / bare["cpu_per_call"]
            lines.append(
                f"  API, {conc:2d} in flight    CPU/call {lean['cpu_per_call'] * 1000:6.3f} ms vs "
                f"bare pool {bare['cpu_per_call'] * 1000:6.3f} ms = {ratio:.2f}x "
                f"(target <= 2x: {ok[ratio <= 2]}); calls/s {lean['calls_per_s']:6.0f} vs "
                f"{bare['calls_per_s']:6.0f} = {lean['calls_per_s'] / bare['calls_per_s']:.2f}x"
            )
        lean16 = self.lean[min(self.lean)]
        lines.append(
            f"  refresh peak         {lean16['peak_growth_mb']:6.1f} MB above the start vs "
            f"retained {lean16['retained_growth_mb']:6.1f} MB (bare pool peak "
            f"{self.bare[min(self.bare)]['peak_growth_mb']:.1f} MB)"
        )
        floor = math.ceil(n / 100)
        lines.append(
            f"  restart, --cache.dir list {self.restart_list_calls:.0f} + detail "
            f"{self.restart_detail_calls:.0f} calls in {self.restart_seconds:.2f} s (cold start "
            f"{self.cold_seconds:.2f} s) vs list-only floor {floor}: detail <= N/100 "
            f"{ok[self.restart_detail_calls <= n / 100]}"
        )
        return lines

    def row(self) -> str:
        cells = [f"{self.servers:,}"]
        for conc in sorted(self.lean):
            lean, bare = self.lean[conc], self.bare[conc]
            cells.append(
                f"{lean['cpu_per_call'] * 1000:.2f} ms / {bare['cpu_per_call'] * 1000:.2f} ms "
                f"({lean['cpu_per_call'] / bare['cpu_per_call']:.2f}x)"
            )
            cells.append(f"{lean['calls_per_s']:.0f} / {bare['calls_per_s']:.0f}")
        lean16 = self.lean[min(self.lean)]
        cells.append(f"{lean16['peak_growth_mb']:.0f} MB / {lean16['retained_growth_mb']:.0f} MB")
        cells.append(
            f"{self.restart_list_calls:.0f} + {self.restart_detail_calls:.0f} "
            f"(floor {math.ceil(self.servers / 100)} + 0), {self.restart_seconds:.1f} s vs "
            f"{self.cold_seconds:.1f} s cold"
        )
        return "| " + " | ".join(cells) + " |"


API_TABLE_HEADER = (
    "| N | CPU per call, 16 in flight: exporter / bare pool | calls/s at 16: exporter / bare "
    "| CPU per call, 64 in flight | calls/s at 64 | refresh peak / retained (growth) "
    "| restart with --cache.dir: list + detail calls, time |\n"
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def exporter_args(url: str, port: int, ttl: float, concurrency: int, rate: float) -> list[str]:
    args = [sys.executable, "-m", "cph_exporter", "--log.level", "warn"]
    args += ["--cph.region", SIMULATOR_REGION, "--cph.project-id"]
    args += [SIMULATOR_PROJECT_ID, "--cph.endpoint", url]
    args += ["--web.listen-address", f"127.0.0.1:{port}"]
    args += ["--cache.ttl", f"{ttl}s", "--cache.max-stale", "2h"]
    args += ["--cph.concurrency", str(concurrency)]
    args += ["--cph.max-requests-per-second", str(rate)]
    args += ["--cph.refresh-timeout", "30m", "--cache.detail-max-age", "2h"]
    return args


def exporter_env() -> dict[str, str]:
    env = dict(os.environ)
    env |= {"HUAWEICLOUD_SDK_AK": SIMULATOR_ACCESS_KEY}
    env |= {"HUAWEICLOUD_SDK_SK": SIMULATOR_SECRET_KEY}
    return env


def timed_start(args: list[str], port: int, servers: int) -> tuple[float, dict[str, float]]:
    """Start an exporter; the seconds to its first complete scrape and the API calls made."""
    prometheus = {
        "Accept": PROMETHEUS_ACCEPT,
        "Accept-Encoding": "gzip",
        "X-Prometheus-Scrape-Timeout-Seconds": "1800",
    }
    started = time.perf_counter()
    with process(args, exporter_env()) as exporter:
        wait_ready(port, exporter, "/-/healthy")
        body = gzip.decompress(fetch(port, headers=prometheus))
        seconds = time.perf_counter() - started
        if servers_in(b"\n" + body) != servers:
            raise RuntimeError("the scrape did not list every server")
        if b"\ncph_exporter_servers_without_details 0" not in b"\n" + body:
            raise RuntimeError("some servers have no details")
        return seconds, api_calls(port)


def run_api(servers: int, args: argparse.Namespace) -> ApiResult:
    sim_args = [sys.executable, "-m", "cph_exporter.simulator", "--servers", str(servers)]
    sim_args += ["--latency", str(args.latency), "--listen", "127.0.0.1:0"]
    with process(sim_args) as sim, tempfile.TemporaryDirectory() as cache:
        assert sim.stdout is not None
        url = sim.stdout.readline().strip()
        lean: dict[int, dict[str, float]] = {}
        bare: dict[int, dict[str, float]] = {}
        for conc in (16, 64):
            bare[conc] = measured("bare", url, servers, conc)
            lean[conc] = measured("lean", url, servers, conc)
        port = free_port()
        start_args = exporter_args(url, port, 3600, args.concurrency, args.rate)
        start_args += ["--cache.dir", cache]
        cold_seconds, _ = timed_start(start_args, port, servers)
        restart_seconds, calls = timed_start(start_args, port, servers)
    return ApiResult(
        servers=servers,
        lean=lean,
        bare=bare,
        restart_list_calls=calls.get("ListCloudPhoneServers", 0),
        restart_detail_calls=calls.get("GetCloudPhoneServerDetail", 0),
        restart_seconds=restart_seconds,
        cold_seconds=cold_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--measure"]:
        kind, url, servers, concurrency = sys.argv[2:6]
        run = measure_lean if kind == "lean" else measure_bare
        print(__import__("json").dumps(run(url, int(servers), int(concurrency))), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, nargs="+", default=[100, 1000, 10_000], metavar="N")
    parser.add_argument("--repeat", type=int, default=10, help="scrapes per warm median")
    parser.add_argument("--latency", type=float, default=0.02, help="API latency, seconds")
    parser.add_argument("--concurrency", type=int, default=16, help="--cph.concurrency")
    parser.add_argument("--rate", type=float, default=0, help="--cph.max-requests-per-second")
    parser.add_argument(
        "--ttl",
        type=float,
        default=None,
        help="--cache.ttl in seconds; it must outlast the warm scrapes "
        "(default: 30, or 12 per 1,000 servers beyond that)",
    )
    args = parser.parse_args(argv)
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; concurrency "
        f"{args.concurrency}, rate cap {args.rate or 'off'}, warm medians of {args.repeat}",
        flush=True,
    )
    results = []
    api_results = []
    for servers in args.servers:
        result = run_one(servers, args)
        results.append(result)
        print("\n".join(result.lines()), flush=True)
        api_result = run_api(servers, args)
        api_results.append(api_result)
        print("\n".join(api_result.lines()), flush=True)
    print()
    print(TABLE_HEADER)
    for result in results:
        print(result.row())
    print()
    print(API_TABLE_HEADER)
    for api_result in api_results:
        print(api_result.row())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
