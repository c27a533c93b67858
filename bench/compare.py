"""Before and after: the judged ack load on two revisions of leadbot, in alternating rounds.

`python -m bench.compare BEFORE AFTER [--db sqlite|postgres] [--requests N] [--rounds R]
[--slack-tls]`
serves each revision (a git revision, or `.` for the working tree as it is) as `leadbot serve`
from its own copy and on its own database, both on the same CPU, and sends each the ack
scenario's load (16 clients, alternating `/lead` and Claim, Slack at 300 ms). The order
alternates round by round (before first, then after first, ...) so that the machine's drift
falls on both. Each round prints requests/s and the server's CPU per request (from /proc),
and the end gives the after/before ratio of CPU per request in each round and their median.
Each run starts once neither process is doing CPU-bound after-ack work, and its CPU counts
until its own is done (bench.common.wait_quiet).

For changes of a few percent, which a pair of `python -m bench --quick` runs cannot resolve:
their saturated rounds last about a second, one after another (bench/HISTORY.md). Not part of
`python -m bench`. Both revisions must share the database schema: this checkout migrates and
seeds the databases, and `serve` refuses a schema it does not know.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.ack import CLIENTS, LATENCY, WARMUP, _p, _sim, _warm
from bench.common import (
    REPO,
    Database,
    LoadResult,
    Served,
    loopback_slack,
    pg_server_version,
    run_measured,
    use_slack_tls,
    wait_quiet,
)
from bench.workload import mixed, seed_claimable
from bot.slack_emulator import SlackEmulator
from models import Lead


@dataclass
class Side:
    label: str  # "before" | "after"
    rev: str
    root: Path  # what the served process imports
    database: Database | None = None
    served: Served | None = None
    targets: list[Lead] = field(default_factory=list)
    used: int = 0


def export(rev: str, into: Path) -> tuple[Path, str]:
    """The tree of `rev` (or the working tree, for `.`) and a name for it."""
    if rev == ".":
        return REPO, "working tree"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--verify", "--short", f"{rev}^{{commit}}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        tree = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", commit],
            check=True,
            capture_output=True,
        ).stdout
    except subprocess.CalledProcessError as e:
        said = e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr
        raise SystemExit(f"{rev}: not a revision of this repository ({said.strip()})") from None
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        archive.extractall(into, filter="data")
    return into, commit


def schema_head(root: Path) -> str:
    """The newest migration the tree at `root` knows (bot.db.HEAD): its database is migrated to
    that, since a leadbot refuses a schema newer than it knows."""
    found = re.search(r'^HEAD = "(\w+)"', (root / "bot" / "db.py").read_text(), re.MULTILINE)
    return found.group(1) if found else "head"


def _round(side: Side, slack: SlackEmulator, n: int, people: int) -> LoadResult:
    assert side.served is not None
    plan = mixed(_sim(side.served, slack), side.targets[side.used :], n, people)
    side.used += n // 2
    return run_measured(side.served, plan, clients=CLIENTS, max_seconds=90)


def _line(side: Side, load: LoadResult) -> str:
    cpu = load.cpu_per_request
    return (
        f"{side.label} {load.throughput:5.0f} req/s, "
        f"{'-' if cpu is None else f'{cpu * 1000:.2f}'} ms CPU/request, "
        f"p50 {_p(load, 50)} ms, {load.errors} errors, claims done {load.drain or 0:.1f} s after"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    p.add_argument("before", help="git revision, or . for the working tree")
    p.add_argument("after", help="git revision, or . for the working tree")
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--requests", type=int, default=2400, help="per side and round")
    p.add_argument("--rounds", type=int, default=4, help="an even number balances the order")
    p.add_argument("--slack-tls", action="store_true", help="the loopback Slack speaks HTTPS")
    args = p.parse_args(argv)
    if args.requests < 2 or args.rounds < 1:
        p.error("--requests must be at least 2 and --rounds at least 1")
    if args.db == "postgres" and pg_server_version() is None:
        print("bench.compare: PostgreSQL is not reachable (set BENCH_PG_URL)")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="leadbot-compare-"))
    if args.slack_tls:
        use_slack_tls(workdir)
    slack = loopback_slack()
    slack.latency(LATENCY)
    sides: list[Side] = []
    try:
        for label, rev in (("before", args.before), ("after", args.after)):
            root, name = export(rev, workdir / label)
            sides.append(Side(label, name, root))
        # One CPU for both, where PIN_CPU=auto puts a lone leadbot: the two never run at once.
        cpu = str(max(os.sched_getaffinity(0)))
        for side in sides:
            side.database = Database.create(
                args.db, f"compare-{side.label}", workdir, revision=schema_head(side.root)
            )
            engine = side.database.engine()
            try:
                side.targets = seed_claimable(
                    engine, WARMUP // 2 + args.rounds * (args.requests // 2 + 1)
                )
            finally:
                engine.dispose()
            side.served = Served.product(
                f"compare-{side.label}",
                side.database.url,
                slack.url,
                workdir,
                PIN_CPU=cpu,
                PYTHONPATH=str(side.root),
            ).start()
        for side in sides:
            assert side.served is not None
            side.served.wait_healthy()
            _warm(side.served, slack, side.targets)
            side.used = WARMUP // 2
        print(
            f"{args.db}: before = {sides[0].rev}, after = {sides[1].rev}; {CLIENTS} clients, "
            f"Slack at {LATENCY * 1000:.0f} ms, {args.requests} requests per side and round, "
            f"both on CPU {cpu}"
        )
        ratios = []
        for r in range(args.rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            people = (r + 1) * 100_000  # the same texts for both sides in a round
            loads = {}
            for side in order:
                wait_quiet([s.served for s in sides if s.served is not None])
                loads[side.label] = _round(side, slack, args.requests, people)
            print(f"  round {r + 1}: " + " | ".join(_line(s, loads[s.label]) for s in order))
            before, after = loads["before"].cpu_per_request, loads["after"].cpu_per_request
            if before and after:
                ratios.append(after / before)
        if ratios:
            shown = " / ".join(f"{x:.3f}" for x in ratios)
            print(
                f"after/before CPU per request: {shown}; median {statistics.median(ratios):.3f}, "
                f"lower in {sum(x < 1 for x in ratios)} of {len(ratios)} rounds"
            )
    finally:
        for side in sides:
            if side.served is not None:
                side.served.stop()
            if side.database is not None:
                side.database.drop()
        slack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
