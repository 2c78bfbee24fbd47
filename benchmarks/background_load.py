"""A reproducible busy machine for timing benchmarks.

Timing results that held on a quiet machine missed on a shared one (issue #9: whole networks
fell from 96-98 % to 56-78 % within ±10 % while training jobs ran beside them), but "whatever
else was running" cannot be repeated. This module starts the same kind of other work on
demand: ``n`` processes, each training a small CNN with torch on random batches with
``threads`` threads (torch's default on this 2-core machine is 2), which contends for the cores,
the SMT siblings and the caches as a real search's training does. With ``--duty D`` each worker
trains only a fraction ``D`` of every 2 s cycle, like a search that alternates training with
evaluation and export.

    with background_load(2):            # from a benchmark
        ...
    python benchmarks/background_load.py --workers 2   # by hand, until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator


def _train_forever(threads: int, duty: float, period_s: float = 2.0) -> None:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.Conv2d(32, 64, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    while True:
        start = time.monotonic()
        while time.monotonic() - start < duty * period_s:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        rest = period_s - (time.monotonic() - start)
        if rest > 0:
            time.sleep(rest)


@contextlib.contextmanager
def background_load(workers: int, threads: int = 2, duty: float = 1.0) -> Iterator[None]:
    """Run ``workers`` training processes for the duration of the ``with`` block (none for 0)."""
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--threads", str(threads), "--duty", str(duty)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(max(0, workers))]
    try:
        if procs:
            time.sleep(3.0)  # let torch import and the load settle
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duty", type=float, default=1.0, help="share of each 2 s cycle spent training (0-1]")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _train_forever(args.threads, args.duty)
        return
    from flightco.machine_load import background_cores

    with background_load(args.workers, args.threads, args.duty):
        while True:
            print(f"other processes: {background_cores(2.0):.2f} cores busy", flush=True)


if __name__ == "__main__":
    main()
