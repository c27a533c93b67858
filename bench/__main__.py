"""`python -m bench [--quick] [--only NAME[,NAME]] [--db sqlite|postgres|both] [--diagnostics]
[--slack-tls]`.

Prints a table and writes bench/results.json (figures, ratios to each baseline, the machine).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    SERVED_ENV,
    Context,
    Row,
    ScenarioResult,
    machine_info,
    pg_server_version,
    slack_scheme,
    use_slack_tls,
    write_json,
)
from bot.settings import SETTINGS_HELP

# name -> module; each has NAME and run(ctx) -> ScenarioResult. Order: cheap and telling first.
SCENARIOS = {
    "ack": "bench.ack",
    "history": "bench.history",
    "burst": "bench.burst",
    "contention": "bench.contention",
    "footprint": "bench.footprint",
}
RESULTS = Path(__file__).resolve().parent / "results.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller sizes; under 2 minutes")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help=f"run only these scenarios (repeat or comma-separate): {', '.join(SCENARIOS)}",
    )
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument(
        "--diagnostics",
        action="store_true",
        help="also run the diagnostic variants (ack: leadbot with LOG_LEVEL=WARNING); not judged",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    p.add_argument(
        "--slack-tls",
        action="store_true",
        help="the loopback Slack answers over HTTPS, as Slack does (default: plain HTTP)",
    )
    p.add_argument(
        "--web-threads",
        type=int,
        default=None,
        help="WEB_THREADS for leadbot and the baselines alike "
        f"(default: leadbot's default, {SETTINGS_HELP['WEB_THREADS'][0]})",
    )
    p.add_argument(
        "--pin-cpu",
        default=None,
        help="PIN_CPU for leadbot and the baselines alike: auto, off or CPU numbers "
        f"(default: leadbot's default, {SETTINGS_HELP['PIN_CPU'][0]})",
    )
    return p.parse_args(argv)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if abs(value) >= 100 or float(value).is_integer():
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return f"{text} {unit}".strip()


def table(rows: list[Row]) -> str:
    head = ("scenario", "db", "metric", "value", "baseline/bound", "ratio", "target", "ok")
    lines = [
        (
            r.scenario,
            r.db,
            r.metric,
            _fmt(r.value, r.unit),
            _fmt(r.baseline, r.unit) if r.baseline is not None else "-",
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            {True: "ok", False: "MISS", None: ""}[r.ok],
        )
        for r in rows
    ]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    wanted = [n for item in args.only for n in item.split(",") if n] or list(SCENARIOS)
    unknown = [n for n in wanted if n not in SCENARIOS]
    if unknown:
        print(f"bench: unknown scenario {', '.join(unknown)}; one of {', '.join(SCENARIOS)}")
        return 2
    # The bench process logs nothing of the product's; scenario progress goes to stderr.
    logging.basicConfig(level=logging.ERROR)
    pg = pg_server_version()
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    skipped: list[str] = []
    if "postgres" in dbs and pg is None:
        dbs.remove("postgres")
        skipped.append("postgres (not reachable)")
        if not dbs:
            print("bench: PostgreSQL is not reachable (set BENCH_PG_URL)")
            return 2

    def log(message: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {message}", file=sys.stderr, flush=True)

    if args.web_threads is not None:
        SERVED_ENV["WEB_THREADS"] = str(args.web_threads)
    if args.pin_cpu is not None:
        SERVED_ENV["PIN_CPU"] = args.pin_cpu
    t0 = time.monotonic()
    results: list[ScenarioResult] = []
    with tempfile.TemporaryDirectory(prefix="leadbot-bench-") as tmp:
        if args.slack_tls:
            use_slack_tls(Path(tmp))
        ctx = Context(
            quick=args.quick, dbs=dbs, workdir=Path(tmp), log=log, diagnostics=args.diagnostics
        )
        for name in wanted:
            module = importlib.import_module(SCENARIOS[name])
            log(f"{name}: start ({', '.join(dbs)})")
            started = time.monotonic()
            try:
                result: ScenarioResult = module.run(ctx)
            except Exception as e:
                result = ScenarioResult(name, error=f"{type(e).__name__}: {e}")
                log(f"{name}: FAILED\n{traceback.format_exc()}")
            result.seconds = time.monotonic() - started
            log(f"{name}: done in {result.seconds:.1f}s")
            results.append(result)

    rows = [r for res in results for r in res.rows]
    print()
    print(table(rows))
    misses = [r for r in rows if r.ok is False]
    failed = [res for res in results if res.error]
    print()
    summary = f"{len(rows)} figures, {len(misses)} miss their target"
    if failed:
        summary += f", {len(failed)} scenario(s) failed"
    print(summary)
    for res in failed:
        print(f"  {res.name}: {res.error}")
    data: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "served_settings": dict(SERVED_ENV) or "defaults",
        "slack": slack_scheme(),
        "databases": dbs,
        "skipped": skipped,
        "seconds": round(time.monotonic() - t0, 1),
        "machine": machine_info(pg),
        "scenarios": {res.name: res.to_json() for res in results},
    }
    write_json(args.out, data)
    print(f"results written to {args.out} ({data['seconds']} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
