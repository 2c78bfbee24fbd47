"""How busy the machine is with *other* work while flightco times something.

A latency measured while other processes compete for the cores (or for an SMT sibling and the
shared caches) reads slow, and by an amount that moves with their load; a predictor fitted or
checked on such timings inherits the noise. The kernel's counters say how much CPU time every
process used (``/proc/stat``) and how much this one used (``/proc/self/stat``, all its threads,
onnxruntime's included); the difference over a wall-clock window is the number of cores that
other work kept busy. That is what a quiet-machine check needs: cheap to read (two small files),
exact enough (clock ticks, usually 10 ms), and blind to nothing that runs on the same kernel.

On systems without ``/proc`` the meter reads ``nan``: flightco then says it could not check.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _all_busy_ticks() -> float | None:
    """Busy clock ticks of all CPUs together since boot (user, nice, system, irq, softirq, steal)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    v = [float(x) for x in fields[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already inside user/nice]
    return v[0] + v[1] + v[2] + sum(v[5:8])


def _own_ticks() -> float | None:
    """Clock ticks this process (every thread) spent on a CPU: utime + stime."""
    try:
        with open("/proc/self/stat") as f:
            text = f.read()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()  # the name in parentheses may contain spaces
    return float(rest[11]) + float(rest[12])


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class LoadMeter:
    """Cores kept busy by other processes between :meth:`start` (or construction) and :meth:`read`.

    >>> meter = LoadMeter(); ...; meter.read()   # e.g. 1.7 (of 2 cores) while a training job runs

    Read it over windows of a tenth of a second or more: the machine's counters advance in clock
    ticks while this process's own time is exact, so a window of a few milliseconds reads low
    (measured here beside 1.7 busy cores: 0.8 from 2 ms windows, 1.6 from 10-50 ms, 1.7 from 0.2 s).
    """

    _t: float = 0.0
    _all: float | None = None
    _own: float | None = None

    def __post_init__(self) -> None:
        self.start()

    def start(self) -> None:
        self._t, self._all, self._own = time.perf_counter(), _all_busy_ticks(), _own_ticks()

    @property
    def seconds(self) -> float:
        """Wall-clock seconds since :meth:`start`."""
        return time.perf_counter() - self._t

    def read(self) -> float:
        """Average number of cores other processes used since :meth:`start` (``nan`` if unknown)."""
        now_all, now_own = _all_busy_ticks(), _own_ticks()
        dt = time.perf_counter() - self._t
        if None in (self._all, self._own, now_all, now_own) or dt <= 0:
            return math.nan
        other = (now_all - self._all) - (now_own - self._own)
        return max(0.0, other / _TICK / dt)


def background_cores(window_s: float = 0.5) -> float:
    """Sample the other processes' load over ``window_s`` seconds while this one sleeps."""
    meter = LoadMeter()
    time.sleep(window_s)
    return meter.read()


QUIET_CORES = 0.25
"""Other work below this many busy cores counts as a quiet machine: a background daemon's
occasional tick, not a competing job."""

SPELL_MARGIN = 0.3
"""A stretch of timing counts as a busy spell when other processes kept this many cores more
busy than in the machine's quiet stretches of the same measurement (its 10th percentile): a
margin above the ~0.1-core resolution of a 0.2 s window of clock ticks."""


def wait_for_quiet(max_wait_s: float, threshold: float = QUIET_CORES, window_s: float = 0.5) -> float:
    """Wait (up to ``max_wait_s``) until other processes keep fewer than ``threshold`` cores busy
    over one window; returns the last reading, so the caller can say it timed a busy machine."""
    deadline = time.monotonic() + max(0.0, max_wait_s)
    while True:
        load = background_cores(window_s)
        if not load >= threshold or time.monotonic() >= deadline:  # nan (unknown) does not wait
            return load
