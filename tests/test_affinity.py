"""PIN_CPU: which CPUs a server process keeps to, and `leadbot serve` keeping to them."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot import affinity
from bot.affinity import choose, claim, has_cpu_quota, release_claims
from bot.settings import SettingsError
from bot.slack_emulator import SlackEmulator
from tests.test_outbox import _bot_env, _serving
from tests.test_startup import GOOD, ROOT, _leadbot


def test_auto_keeps_to_the_highest_cpu_and_leaves_a_single_cpu_alone() -> None:
    assert choose("auto", {0, 1, 2, 3}) == {3}
    assert choose("auto", {2, 5}) == {5}
    assert choose("auto", {0}) is None  # nothing to choose between


def test_auto_passes_over_cpus_other_processes_hold_and_numbers_are_claimed_too() -> None:
    held = {3, 1}
    asked: list[int] = []

    def take(cpu: int) -> bool:  # another process holds what is in `held`
        asked.append(cpu)
        if cpu in held:
            return False
        held.add(cpu)
        return True

    assert choose("auto", {0, 1, 2, 3}, take) == {2}
    assert choose("auto", {0, 1, 2, 3}, take) == {0}
    assert choose("auto", {0, 1, 2, 3}, take) is None  # every CPU taken: the kernel places it
    assert asked[:3] == [3, 2, 3]  # highest first
    # A number is the operator's choice, held or not; claimed so that auto keeps off it.
    held.clear()
    assert choose("5", {4, 5}, take) == {5} and held == {5}
    assert choose("5", {4, 5}, take) == {5}
    assert choose("auto", {4, 5}, take) == {4}


def test_a_claim_is_held_until_released_and_is_host_wide() -> None:
    cpu = 100_000 + os.getpid()  # no real CPU: nothing else on the host asks for it
    try:
        assert claim(cpu)
        assert not claim(cpu)  # held, by this process here
        other = subprocess.run(
            [sys.executable, "-c", f"from bot.affinity import claim; print(claim({cpu}))"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            check=True,
        )
        assert other.stdout.strip() == "False"  # and by this process for every other
    finally:
        release_claims()
    assert claim(cpu)
    release_claims()


def test_a_host_that_refuses_the_claim_itself_pins_as_a_lone_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sandbox that forbids abstract sockets leaves nothing to agree through: every process
    takes the highest CPU, as before claims, rather than none."""

    class Refusing(socket.socket):
        def bind(self, address: object) -> None:
            raise PermissionError(errno.EPERM, "not here")

    # This module's view of `socket` only: nothing else in the process is touched.
    here = SimpleNamespace(socket=Refusing, AF_UNIX=socket.AF_UNIX, SOCK_DGRAM=socket.SOCK_DGRAM)
    monkeypatch.setattr(affinity, "socket", here)
    assert claim(100_000 + os.getpid())
    assert choose("auto", {0, 1}, claim) == {1}
    assert affinity._claims == []  # nothing held


def _cgroups(tmp_path: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(membership)
    return root, proc


@pytest.mark.parametrize(
    ("membership", "files", "quota"),
    [
        ("0::/\n", {"cpu.max": "max 100000\n"}, False),  # v2, no limit
        ("0::/kubepods/pod1/c1\n", {"kubepods/pod1/cpu.max": "50000 100000\n"}, True),
        ("0::/\n", {"cpu.max": "200000 100000\n"}, True),  # docker --cpus=2 (own namespace)
        ("3:cpu,cpuacct:/docker/abc\n", {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "-1"}, False),
        ("3:cpu,cpuacct:/docker/abc\n", {"cpu,cpuacct/docker/cpu.cfs_quota_us": "150000"}, True),
        ("1:cpu:/\n0::/\n", {"cpu/cpu.cfs_quota_us": "-1\n"}, False),  # v1 beside v2 (here)
        ("0::/\n", {}, False),  # nothing readable
        ("garbage\n0::\n", {"cpu.max": "50000 100000\n"}, False),  # no membership line
    ],
    ids=[
        "v2 none",
        "v2 pod limit",
        "v2 container",
        "v1 none",
        "v1 parent",
        "hybrid",
        "none",
        "malformed",
    ],
)
def test_a_cpu_quota_is_found_in_the_cgroup_or_above_it(
    tmp_path: Path, membership: str, files: dict[str, str], quota: bool
) -> None:
    root, proc = _cgroups(tmp_path, membership, files)
    assert has_cpu_quota(root, proc) is quota


def test_off_leaves_placement_to_the_kernel_and_numbers_are_taken_as_given() -> None:
    assert choose("off", {0, 1}) is None
    assert choose("0", {0, 1}) == {0}
    assert choose("2, 3", {0, 1, 2, 3}) == {2, 3}
    # Ranges as Linux writes them, and as the error below names the CPUs a process may use.
    assert choose("0-2,5", {0, 1, 2, 3, 5}) == {0, 1, 2, 5}


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
        try:
            status = (task / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended after the listing: it runs nowhere now
        for line in status.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out[task.name] = line.split(":", 1)[1].strip()
    return out


def _free_cpus(needed: int) -> list[int]:
    """The CPUs `auto` may take, lowest first: those no leadbot process outside this test holds
    (a developer's own `leadbot serve` holds one). Skips the test if fewer than `needed`."""
    free = []
    for cpu in sorted(os.sched_getaffinity(0)):
        if affinity.claim(cpu):
            free.append(cpu)
    affinity.release_claims()
    if len(free) < needed:
        pytest.skip(f"other leadbot processes on this host hold all but {len(free)} CPUs")
    return free


def _auto_env(database_url: str, slack: SlackEmulator) -> dict[str, str]:
    env = _bot_env(database_url, slack)
    del env["PIN_CPU"]  # the default
    return env


@linux_smp
@pytest.mark.usefixtures("cpu_claims")
def test_serve_keeps_every_thread_on_one_cpu_by_default(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    last = str(_free_cpus(1)[-1])
    with _serving(_auto_env(database_url, slack), slack, tmp_path) as (proc, sim, _log):
        assert sim.slash_command("", user_id="U0MARKET01").status == 200  # threads busy once
        threads = _cpus_of_every_thread(proc.pid)
    # Waitress's workers, the outbox, the scheduler: all started after the pinning.
    assert len(threads) > 10
    assert set(threads.values()) == {last}


@linux_smp
@pytest.mark.usefixtures("cpu_claims")
def test_a_second_process_on_auto_keeps_off_the_first_ones_cpu(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    """Several processes on one host (README → Sizing) spread out instead of sharing a CPU."""
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir(), second_dir.mkdir()
    env = _auto_env(database_url, slack)
    _free_cpus(2)  # (skips where other processes leave fewer than two)
    single = {str(cpu) for cpu in os.sched_getaffinity(0)}  # "1", not "0-1" (unpinned)
    # The second starts once the first is serving, pinned.
    with (
        _serving(env, slack, first_dir) as (first, _sim, _log),
        _serving(env, slack, second_dir) as (second, _sim2, _log2),
    ):
        one = set(_cpus_of_every_thread(first.pid).values())
        two = set(_cpus_of_every_thread(second.pid).values())
    # Each on one CPU, not the same one; which ones depends on what else held CPUs meanwhile
    # (a leadbot process of another test run on this host).
    assert len(one) == len(two) == 1 and one != two, (one, two)
    assert one <= single and two <= single, (one, two)


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
