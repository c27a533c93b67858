"""PIN_CPU: run a server process on one CPU.

One interpreter lock lets a leadbot process run Python on about one core at a time, and its
threads hand that lock to each other dozens of times per request (every database call releases
it). Spread over several CPUs, each hand-over wakes a sleeping CPU; on a virtual machine that
costs a trip through the hypervisor. Kept on one CPU, a hand-over is a plain context switch
(measured in README → Performance). The process loses little: its Python never ran on two cores at
once anyway.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from bot.settings import PIN_AUTO as AUTO
from bot.settings import PIN_OFF as OFF
from bot.settings import SettingsError


def choose(setting: str, allowed: set[int]) -> set[int] | None:
    """The CPUs to keep the process on, or None to leave its placement to the kernel.

    `auto` takes the highest-numbered CPU the process may use (the kernel tends to run its own
    housekeeping and interrupts on CPU 0); `off` pins nothing; `1` or `2,3` are those CPUs.
    """
    if setting == OFF or (setting == AUTO and len(allowed) <= 1):
        return None
    if setting == AUTO:
        return {max(allowed)}
    wanted = {int(c) for c in setting.split(",")}
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
    return wanted


def pin_process(setting: str) -> set[int] | None:
    """Keep this process, and every thread it has or starts, on the CPUs `setting` names.

    Returns the CPUs, or None when nothing was pinned. Call it before starting threads: they
    inherit the calling thread's CPUs, and the ones already running are moved here too.
    """
    if not hasattr(os, "sched_setaffinity"):  # macOS, Windows: the kernel places threads
        if setting in (AUTO, OFF):
            return None
        raise SettingsError(
            f"PIN_CPU: {setting!r} — this system cannot keep a process on chosen CPUs; "
            "set auto or off"
        )
    cpus = choose(setting, os.sched_getaffinity(0))
    if cpus is None:
        return None
    tasks = Path("/proc/self/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)
    return cpus


def _ranges(cpus: set[int]) -> str:
    """{0, 1, 2, 5} → '0-2, 5', as Linux writes CPU lists."""
    out: list[str] = []
    for cpu in sorted(cpus):
        if out and cpu == int(out[-1].rpartition("-")[2]) + 1:
            out[-1] = f"{out[-1].partition('-')[0]}-{cpu}"
        else:
            out.append(str(cpu))
    return ", ".join(out)
