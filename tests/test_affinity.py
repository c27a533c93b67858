"""PIN_CPU: which CPUs a server process keeps to, and `leadbot serve` keeping to them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bot.affinity import choose
from bot.settings import SettingsError
from bot.slack_emulator import SlackEmulator
from tests.test_outbox import _bot_env, _serving
from tests.test_startup import GOOD, _leadbot


def test_auto_keeps_to_the_highest_cpu_and_leaves_a_single_cpu_alone() -> None:
    assert choose("auto", {0, 1, 2, 3}) == {3}
    assert choose("auto", {2, 5}) == {5}
    assert choose("auto", {0}) is None  # nothing to choose between


def test_off_leaves_placement_to_the_kernel_and_numbers_are_taken_as_given() -> None:
    assert choose("off", {0, 1}) is None
    assert choose("0", {0, 1}) == {0}
    assert choose("2, 3", {0, 1, 2, 3}) == {2, 3}


def test_a_cpu_the_process_may_not_use_is_named_with_the_ones_it_may() -> None:
    with pytest.raises(SettingsError) as error:
        choose("1,7,9", {0, 1, 2, 3, 5})
    assert str(error.value) == (
        "PIN_CPU: CPUs 7, 9 are not available to this process (it may use 0-3, 5) — "
        "name one of those, or set auto or off"
    )


linux_smp = pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and a process allowed on 2 or more CPUs",
)


def _cpus_of_every_thread(pid: int) -> dict[str, str]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out[task.name] = line.split(":", 1)[1].strip()
    return out


@linux_smp
def test_serve_keeps_every_thread_on_one_cpu_by_default(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    last = str(max(os.sched_getaffinity(0)))
    with _serving(_bot_env(database_url, slack), slack, tmp_path) as (proc, sim, _log):
        assert sim.slash_command("", user_id="U0MARKET01").status == 200  # threads busy once
        threads = _cpus_of_every_thread(proc.pid)
    # Waitress's workers, the outbox, the scheduler: all started after the pinning.
    assert len(threads) > 10
    assert set(threads.values()) == {last}


@linux_smp
def test_serve_with_pinning_off_leaves_its_threads_on_every_cpu(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    env = {**_bot_env(database_url, slack), "PIN_CPU": "off"}
    with _serving(env, slack, tmp_path) as (proc, _sim, _log):
        threads = _cpus_of_every_thread(proc.pid)
    mine = _cpus_of_every_thread(os.getpid())
    assert set(threads.values()) == set(mine.values())  # what it inherited, untouched
    assert "," in next(iter(threads.values())) or "-" in next(iter(threads.values()))


def test_serve_on_a_cpu_it_may_not_use_stops_with_one_line(tmp_path: Path) -> None:
    result = _leadbot("serve", env={**GOOD, "PIN_CPU": "4095"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("leadbot: PIN_CPU: CPU 4095 is not available to this process")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
