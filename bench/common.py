"""What every scenario needs: results, databases, the served processes, signed load, statistics."""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import math
import os
import platform
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from bot import db
from bot.slack_emulator import SlackEmulator
from bot.slack_sim import SLACK_USER_AGENT, Response, SlackSim

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # every socket of the bench is loopback
SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench-token"
LEADS_CHANNEL = "C0LEADS001"
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


# --- results -----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a figure, what it is compared with, whether it meets its target."""

    scenario: str
    db: str  # "sqlite", "postgres" or "-" where the database does not matter
    metric: str
    value: float | None
    unit: str
    baseline: float | None = None
    ratio: float | None = None  # value / baseline (or value / bound), None when not comparable
    target: str = ""
    ok: bool | None = None  # None: no target
    note: str = ""


@dataclass
class ScenarioResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 2),
            "error": self.error,
            "rows": [asdict(r) for r in self.rows],
            "details": self.details,
        }


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


@dataclass
class Context:
    """What the command line asked for, and where scenarios may put files."""

    quick: bool
    dbs: list[str]
    workdir: Path
    log: Callable[[str], None]
    diagnostics: bool = False  # also the variants that explain a figure (--diagnostics)
    started: float = field(default_factory=time.monotonic)

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full


# --- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# --- the machine -------------------------------------------------------------------------------


def machine_info(pg_version: str | None) -> dict[str, Any]:
    from importlib.metadata import version

    import slack_bolt
    import sqlalchemy

    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlalchemy": sqlalchemy.__version__,
        "slack_bolt": slack_bolt.version.__version__,
        "waitress": version("waitress"),
        "psycopg": _dist_version("psycopg"),
        "sqlite": sqlite3.sqlite_version,
        "postgres": pg_version,
        "loadavg_at_start": list(os.getloadavg()),
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


# --- databases ---------------------------------------------------------------------------------


def pg_server_version() -> str | None:
    """PostgreSQL's version, or None when it is not reachable (the PG runs are then skipped)."""
    from models import make_engine

    try:
        engine = make_engine(_sa(PG_ADMIN_URL), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            found = conn.scalar(text("SHOW server_version"))
        engine.dispose()
        return str(found)
    except Exception:
        return None


def _sa(url: str) -> Any:
    return make_url(url).set(drivername="postgresql+psycopg")


@dataclass
class Database:
    """A fresh, migrated database for one scenario run; `drop()` removes it."""

    kind: str  # "sqlite" | "postgres"
    url: str  # as DATABASE_URL would be written by an operator
    path: Path | None = None

    @classmethod
    def create(cls, kind: str, name: str, workdir: Path, revision: str = "head") -> Database:
        if kind == "sqlite":
            path = workdir / f"{name}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            database = cls(kind, f"sqlite:///{path}", path)
        else:
            # The pid keeps concurrent runs (other engineers share this server) apart.
            dbname = f"leadbot_bench_{name}_{os.getpid()}"
            db.fresh_pg_database(PG_ADMIN_URL, dbname)
            url = make_url(PG_ADMIN_URL).set(database=dbname)
            database = cls(kind, url.render_as_string(hide_password=False))
        engine = database.engine()
        # `serve` refuses an unmigrated PostgreSQL, as deployed; `revision`: an older leadbot's
        # newest (bench.compare), which refuses a schema newer than it knows.
        db.upgrade(engine, revision)
        engine.dispose()
        return database

    def engine(self, **kwargs: Any) -> Engine:
        from bot.settings import database_url
        from models import make_engine

        return make_engine(database_url(self.url), **kwargs)

    def drop(self) -> None:
        if self.kind == "sqlite" and self.path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return
        with contextlib.suppress(Exception):
            db.fresh_pg_database(PG_ADMIN_URL, str(make_url(self.url).database), drop=True)


# --- processes under test ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# Settings given to every served process, leadbot and baselines alike (`--web-threads`).
SERVED_ENV: dict[str, str] = {}


@dataclass
class _SlackTls:
    server: ssl.SSLContext
    ca_file: Path


_slack_tls: list[_SlackTls] = []  # set by use_slack_tls(): `--slack-tls`


def use_slack_tls(workdir: Path) -> None:
    """From now on the loopback Slack answers over HTTPS, as Slack does: its certificate comes
    from a throwaway authority that served processes trust through SSL_CERT_FILE."""
    import trustme  # a test extra, like the rest of what the bench needs beyond the product

    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(HOST).configure_cert(server)
    ca_file = workdir / "slack-ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    _slack_tls[:] = [_SlackTls(server, ca_file)]


def slack_scheme() -> str:
    return "https" if _slack_tls else "http"


def loopback_slack() -> SlackEmulator:
    """A started loopback Slack for a scenario, over HTTPS after use_slack_tls()."""
    return SlackEmulator(tls=_slack_tls[0].server if _slack_tls else None).start()


def bot_env(database_url: str, slack_url: str, extra: Mapping[str, str] = ()) -> dict[str, str]:
    """The environment an operator would give `leadbot serve`, pointed at loopback services."""
    env = {
        k: v
        for k, v in os.environ.items()
        # Nothing of the caller's own Slack/database settings may leak into the process.
        if not k.startswith(("SLACK_", "DATABASE_", "LEADS_", "WEB_", "MANAGER_", "REMINDER_"))
    }
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack_url,
            "DATABASE_URL": database_url,
            "LEADS_CHANNEL": LEADS_CHANNEL,
        }
    )
    if _slack_tls:
        env["SSL_CERT_FILE"] = str(_slack_tls[0].ca_file)
    env.update(SERVED_ENV)
    env.update(dict(extra))
    return env


class Served:
    """`leadbot serve` (or the baseline app) as a subprocess on a loopback port."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, workdir: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.t0 = 0.0

    @classmethod
    def product(
        cls, name: str, database_url: str, slack_url: str, workdir: Path, **extra: str
    ) -> Served:
        port = free_port()
        argv = [sys.executable, "-m", "bot.cli", "serve", "--host", HOST, "--port", str(port)]
        return cls(name, argv, bot_env(database_url, slack_url, extra), port, workdir)

    @classmethod
    def baseline(cls, name: str, slack_url: str, workdir: Path, **extra: str) -> Served:
        port = free_port()
        argv = [sys.executable, "-m", "bench.baseline_app", "--port", str(port)]
        # The same settings as the product; the database is never touched by the baseline.
        env = bot_env("sqlite:///unused.db", slack_url, extra)
        return cls(name, argv, env, port, workdir)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/slack/events"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Served:
        log = self.log_path.open("wb")
        self.t0 = time.perf_counter()
        # cwd is the scratch folder: no stray .env is read and no default leadbot.db is created.
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def wait_healthy(self, timeout: float = 30.0) -> float:
        """Seconds from process start to the first 200 on /healthz."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.log_tail()}")
            try:
                conn = HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", "/healthz")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return time.perf_counter() - self.t0
            except (OSError, HTTPException):
                pass
            time.sleep(0.005)
        raise TimeoutError(f"{self.name} not healthy after {timeout}s: {self.log_tail()}")

    def rss_mb(self) -> float:
        """Resident set size (VmRSS) of the server process, in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """CPU time (user + system, every thread) the server process has used so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        utime, stime = int(fields[11]), int(fields[12])  # stat(5) fields 14 and 15
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def busy_share(self, over: float) -> float:
        """The share of one CPU the process used over the next `over` seconds."""
        before = self.cpu_seconds()
        time.sleep(over)
        return (self.cpu_seconds() - before) / over

    def log_tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 3.0) -> float | None:
        """SIGTERM, as a process manager stops it (serve then finishes the work it has acked and
        stops its scheduler and outbox), SIGKILL after `grace` seconds. Not SIGINT: a bench
        started in the background of a non-interactive shell ignores SIGINT, and so would every
        server it starts.

        Returns how long the graceful stop took, or None when it had to be killed.
        """
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
            self.stop_seconds: float | None = time.perf_counter() - t0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self.stop_seconds = None
        return self.stop_seconds

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- signed requests, prepared ahead -----------------------------------------------------------


@dataclass
class Prepared:
    """A request exactly as Slack would send it (signed), ready to POST."""

    kind: str
    body: bytes
    headers: dict[str, str]


class PreparingSim(SlackSim):
    """SlackSim that builds and signs requests but keeps them instead of sending them.

    The load generator then only writes bytes, so the bench process (which shares the machine's
    two cores with the server) spends as little CPU as possible per request.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared: list[Prepared] = []
        self.kind = "request"

    def raw(
        self,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
        timestamp: int | str | None = None,
        secret: str | None = None,
    ) -> Response:
        sent = {
            "Content-Type": content_type,
            "User-Agent": SLACK_USER_AGENT,
            "Accept": "application/json,*/*",
        }
        if sign:
            ts = str(int(time.time()) if timestamp is None else timestamp)
            sent["X-Slack-Request-Timestamp"] = ts
            sent["X-Slack-Signature"] = self.signature(body, ts, secret)
        sent.update(headers or {})
        self.prepared.append(Prepared(self.kind, body, sent))
        return Response(status=0, headers={}, body="", request_body=body)

    def take(self) -> list[Prepared]:
        out, self.prepared = self.prepared, []
        return out


@dataclass
class Sample:
    kind: str
    started: float  # perf_counter at send
    latency: float  # seconds until the whole answer was read
    status: int  # 0: connection error or timeout
    body: bytes = b""


@dataclass
class LoadResult:
    samples: list[Sample]
    wall: float  # seconds from the first send to the last answer
    # CPU the server used from the first send until its CPU-bound after-ack work (the claims)
    # was done, by wait_quiet (run_measured sets it): other load on a shared machine moves it
    # far less than throughput.
    server_cpu: float | None = None
    drain: float | None = None  # seconds from the last answer until then

    def ok(self, kind: str | None = None) -> list[Sample]:
        return [s for s in self.samples if s.status == 200 and kind in (None, s.kind)]

    def latencies(self, kind: str | None = None) -> list[float]:
        return [s.latency for s in self.ok(kind)]

    @property
    def errors(self) -> int:
        return sum(1 for s in self.samples if s.status != 200)

    @property
    def throughput(self) -> float:
        return len(self.ok()) / self.wall if self.wall > 0 else 0.0

    def summary(self, kind: str | None = None) -> dict[str, Any]:
        lat = self.latencies(kind)
        return {
            "requests": len([s for s in self.samples if kind in (None, s.kind)]),
            "ok": len(lat),
            "errors": self.errors if kind is None else None,
            "p50_ms": _ms(percentile(lat, 50)),
            "p90_ms": _ms(percentile(lat, 90)),
            "p99_ms": _ms(percentile(lat, 99)),
            "max_ms": _ms(max(lat) if lat else None),
            "wall_s": round(self.wall, 3),
            "rps": round(self.throughput, 1) if kind is None else None,
            "server_cpu_ms_per_request": _ms(self.cpu_per_request) if kind is None else None,
        }

    @property
    def cpu_per_request(self) -> float | None:
        """Server CPU seconds per answered request, when measured."""
        ok = len(self.ok())
        return self.server_cpu / ok if self.server_cpu is not None and ok else None


# Below this share of a CPU (over QUIET_WINDOW seconds) a served process has worked off a
# load's CPU-bound after-ack work: after a saturated ack round leadbot writes its claims at
# ~85-100% of a CPU for a second or two, then drops to ~5-25% while the DMs and card
# refreshes those claims queued go out at Slack's pace (1 post a second per DM channel),
# for a minute or more. Waiting out that trickle would add minutes to every run; a lower line
# was crossed at random moments within it.
QUIET_SHARE = 0.35
QUIET_WINDOW = 0.5


def wait_quiet(served: Sequence[Served], timeout: float = 60.0) -> float:
    """Wait until none of `served` is still working off an earlier load's CPU-bound after-ack
    work (claims are written after their acks, for a second or two after a saturating load
    ends); seconds waited. A run started sooner would share the CPU with that backlog, and one
    measured only until its last answer would leave that CPU uncounted."""
    started = time.monotonic()
    while any(s.busy_share(QUIET_WINDOW) > QUIET_SHARE for s in served):
        if time.monotonic() - started > timeout:
            break
    return time.monotonic() - started


def run_measured(
    served: Served,
    requests: Sequence[Prepared],
    *,
    clients: int,
    max_seconds: float,
    keep_body: bool = False,
) -> LoadResult:
    """`run_load` on `served` (closed loop), with the server's CPU counted until its claims
    are written (`server_cpu`, `drain`)."""
    cpu0 = served.cpu_seconds()
    load = run_load(
        served.port, requests, clients=clients, max_seconds=max_seconds, keep_body=keep_body
    )
    load.drain = wait_quiet([served])
    load.server_cpu = served.cpu_seconds() - cpu0
    return load


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


# The load's clients share this process with the prepared requests and the loopback Slack: a
# full pass of its cyclic collector (44-73 ms, once every few thousand requests) stopped every
# client at once, and landed in the latency of whatever was in flight, whichever app it was.
_collector = threading.Lock()
_collector_holds = 0


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection in this process inside the block (refcounting still frees most
    garbage); nested and concurrent blocks share one pause."""
    global _collector_holds
    with _collector:
        if _collector_holds == 0:
            gc.collect()
            gc.freeze()  # and what is alive now is not walked when collection resumes
            gc.disable()
        _collector_holds += 1
    try:
        yield
    finally:
        with _collector:
            _collector_holds -= 1
            if _collector_holds == 0:
                gc.unfreeze()
                gc.enable()


def run_load(
    port: int,
    requests: Sequence[Prepared],
    *,
    clients: int,
    max_seconds: float,
    keep_body: bool = False,
    path: str = "/slack/events",
    rate: float | None = None,
) -> LoadResult:
    """Send `requests` in order from `clients` threads, each on its own keep-alive connection,
    as fast as answers come back (closed loop), or with `rate`, one every 1/rate seconds
    (open loop: a request's latency counts from when it was due, so time spent waiting for a
    free client is not hidden). Stops early at `max_seconds`."""
    counter = itertools.count()
    per_thread: list[list[Sample]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    deadline = [0.0]
    origin = [0.0]

    def worker(out: list[Sample]) -> None:
        conn = HTTPConnection(HOST, port, timeout=30)
        with contextlib.suppress(OSError):
            conn.connect()
        start.wait()
        while True:
            i = next(counter)  # itertools.count is atomic under the GIL
            if i >= len(requests) or time.monotonic() > deadline[0]:
                break
            req = requests[i]
            body = b""
            t0 = time.perf_counter()
            if rate is not None:
                due = origin[0] + i / rate
                if due > t0:
                    time.sleep(due - t0)
                t0 = due
            try:
                conn.request("POST", path, body=req.body, headers=req.headers)
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
            except (OSError, HTTPException):
                status = 0
                conn.close()
            latency = time.perf_counter() - t0
            out.append(Sample(req.kind, t0, latency, status, body if keep_body else b""))
        conn.close()

    threads = [
        threading.Thread(target=worker, args=(per_thread[i],), daemon=True) for i in range(clients)
    ]
    with collector_paused():
        for t in threads:
            t.start()
        deadline[0] = time.monotonic() + max_seconds
        origin[0] = time.perf_counter() + 0.01  # the clients are past the barrier by then
        start.wait()
        t_start = time.perf_counter()
        for t in threads:
            t.join(timeout=max_seconds + 60)
    samples = sorted(itertools.chain.from_iterable(per_thread), key=lambda s: s.started)
    t_end = max((s.started + s.latency for s in samples), default=t_start)
    return LoadResult(samples, t_end - t_start)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def lead_texts(n: int, start: int = 0) -> Iterator[str]:
    """Realistic `/lead` lines: name, company, email, phone, priority, #event, a note; a
    different person (email and phone) for every `i` below 4,000,000."""
    priorities = ("hot", "warm", "cold")
    for i in range(start, start + n):
        yield (
            f"Jane Doe {i}, Acme Widgets {i % 97}, jane.doe{i}@example.com, "
            f"+1 415 {200 + i // 10000 % 400:03d} {i % 10000:04d}, "
            f"{priorities[i % 3]}, #expo{i % 7}, wants a demo of the enterprise plan next week"
        )


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
