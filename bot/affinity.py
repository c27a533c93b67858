"""PIN_CPU: run a server process on one CPU.

One interpreter lock lets a leadbot process run Python on about one core at a time, and its
threads hand that lock to each other dozens of times per request (every database call releases
it). Spread over several CPUs, each hand-over wakes a sleeping CPU; on a virtual machine that
costs a trip through the hypervisor. Kept on one CPU, a hand-over is a plain context switch
(measured in bench/HISTORY.md, "One CPU"). The process loses little: its Python never ran on
two cores at once anyway.

`auto` must not put several processes on one CPU, so each takes its CPU host-wide (`claim`), and
a process under a CPU quota (a container's limit), which cannot see its neighbours, is not
pinned at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from bot.settings import PIN_AUTO as AUTO
from bot.settings import PIN_OFF as OFF
from bot.settings import SettingsError, cpu_list

CGROUPS = Path("/sys/fs/cgroup")
# The CPUs this process holds (see claim): kept open for the process's life.
_claims: list[socket.socket] = []


class Placement(NamedTuple):
    cpus: set[int] | None  # None: the kernel places the threads
    note: str = ""  # why `auto` pinned nothing, for the start-up line

    def describe(self) -> str:
        if self.cpus is None:
            return "on the CPUs the kernel picks" + (f" ({self.note})" if self.note else "")
        return f"on CPU {', '.join(map(str, sorted(self.cpus)))} (PIN_CPU)"


def claim(cpu: int) -> bool:
    """Take `cpu` for this process unless another leadbot process on this host has it.

    A claim is an abstract Unix socket bound under the CPU's name: one bind wins, with no file
    to clean up, and the kernel frees it when the process ends, however it ends. (Abstract
    names are per network namespace: containers with their own network do not see each other's
    claims; the quota check in `pin_process` covers the usual case of those.)"""
    if not sys.platform.startswith("linux"):
        return True
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:  # no Unix sockets here (a tight sandbox): no way to agree, take it
        return True
    try:
        sock.bind(f"\0leadbot-pin-cpu-{cpu}")
    except OSError as e:
        sock.close()
        # Taken by another process; any other refusal leaves nothing to agree through.
        return e.errno != errno.EADDRINUSE
    _claims.append(sock)
    return True


def release_claims() -> None:
    """Give back every CPU this process holds (tests; a process's end does it anyway)."""
    while _claims:
        _claims.pop().close()


def has_cpu_quota(cgroups: Path = CGROUPS, proc_cgroup: Path = Path("/proc/self/cgroup")) -> bool:
    """Whether this process's cgroup, or one above it, caps its CPU time, as `docker run
    --cpus` and Kubernetes' CPU limits do (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3 or not fields[2].startswith("/"):
            continue  # not a membership line as the kernel writes them
        _, controllers, path = fields
        if controllers == "":  # v2, mounted alone or as "unified" beside v1
            bases, name = [cgroups, cgroups / "unified"], "cpu.max"
        elif "cpu" in controllers.split(","):
            bases, name = [cgroups / controllers, cgroups / "cpu"], "cpu.cfs_quota_us"
        else:
            continue
        relative = PurePosixPath(path).relative_to("/")
        for base in bases:
            folder = base / relative
            for d in (folder, *folder.parents):
                with contextlib.suppress(OSError, IndexError):
                    if (d / name).read_text().split()[0] not in ("max", "-1"):
                        return True
                if d == base:
                    break
    return False


def choose(
    setting: str, allowed: set[int], take: Callable[[int], bool] = lambda cpu: True
) -> set[int] | None:
    """The CPUs to keep the process on, or None to leave its placement to the kernel.

    `auto` takes the highest-numbered CPU the process may use (the kernel tends to run its own
    housekeeping and interrupts on CPU 0) that `take` grants (see `claim`), so several processes
    spread out; with every CPU taken, none. `off` pins nothing; `1`, `2,3` or `0-3` are those CPUs,
    claimed too, so that `auto` processes keep off them.
    """
    if setting == OFF or (setting == AUTO and len(allowed) <= 1):
        return None
    if setting == AUTO:
        return next(({cpu} for cpu in sorted(allowed, reverse=True) if take(cpu)), None)
    wanted = cpu_list(setting)
    missing = sorted(wanted - allowed)
    if missing:
        named = (
            f"CPUs {', '.join(map(str, missing))} are"
            if len(missing) > 1
            else f"CPU {missing[0]} is"
        )
        raise SettingsError(
            f"PIN_CPU: {named} not available to this process (it may use {_ranges(allowed)}) — "
            "name one of those, or set auto or off"
        )
    for cpu in wanted:
        take(cpu)  # shared with whoever else named it: the operator's choice
    return wanted


def pin_process(setting: str, *, claiming: bool = True) -> Placement:
    """Keep this process, and every thread it has or starts, on the CPUs `setting` names.

    Call it before starting threads: they inherit the calling thread's CPUs, and the ones
    already running are moved here too. `claiming=False` takes the CPU a lone `auto` process
    would, without holding it (the benchmark's baselines, beside the leadbot they compare with).
    """
    if not hasattr(os, "sched_setaffinity"):  # macOS, Windows: the kernel places threads
        if setting in (AUTO, OFF):
            return Placement(None)
        raise SettingsError(
            f"PIN_CPU: {setting!r} — this system cannot keep a process on chosen CPUs; "
            "set auto or off"
        )
    allowed = os.sched_getaffinity(0)
    if setting == AUTO and len(allowed) > 1 and has_cpu_quota():
        # Its neighbours, in containers of their own, cannot be seen: all would take one CPU.
        return Placement(None, "PIN_CPU=auto: under a CPU quota, as in a container")
    cpus = choose(setting, allowed, claim if claiming else lambda cpu: True)
    if cpus is None:
        taken = setting == AUTO and len(allowed) > 1  # not `off`, not a lone CPU: all were held
        return Placement(None, "PIN_CPU=auto: every CPU has a leadbot process" if taken else "")
    tasks = Path("/proc/self/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)
    return Placement(cpus)


def _ranges(cpus: set[int]) -> str:
    """{0, 1, 2, 5} → '0-2, 5', as Linux writes CPU lists."""
    out: list[str] = []
    for cpu in sorted(cpus):
        if out and cpu == int(out[-1].rpartition("-")[2]) + 1:
            out[-1] = f"{out[-1].partition('-')[0]}-{cpu}"
        else:
            out.append(str(cpu))
    return ", ".join(out)
