"""Peak heap memory of one onnxruntime session, measured in a fresh process (a script).

Run as ``python ort_memory.py MODEL.onnx THREADS RUNS``; prints the peak in KB.

What is measured: glibc's count of heap bytes in use (``mallinfo2``: ``uordblks + hblkhd``),
sampled by a thread as fast as it can while the session runs ``RUNS`` batch-1 inferences, minus
the count before the session was created. So it is what the session really holds at its peak:
initializers and pre-packed weights, graph structures, and the tensors live during a run. The CPU
arena is switched off so that the heap follows live tensors instead of the arena's reserved
chunks (with the arena on, every small model reads "1 MB", its first chunk). A first, discarded
session runs before the baseline is read, so that code paged in and one-time runtime state are
not counted. On this machine repeated measurements of a network agree within ~3 KB.

A separate process, because a heap that earlier sessions used and freed hides new allocations.
The file imports nothing of flightco: it is run by path, whatever the caller's ``sys.path``.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


def peak_session_kb(path: str, threads: int = 1, runs: int = 200) -> float:
    """Peak heap KB held by an onnxruntime session of ``path`` over ``runs`` batch-1 runs."""
    import numpy as np
    import onnxruntime as ort

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2

    def used() -> int:
        m = libc.mallinfo2()
        return m.uordblks + m.hblkhd

    data = open(path, "rb").read()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = False
    warm = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for i in warm.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    warm.run(None, feeds)
    del warm
    gc.collect()
    base = used()
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    peak = [used()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            u = used()
            if u > peak[0]:
                peak[0] = u

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    for _ in range(runs):
        sess.run(None, feeds)
    stop.set()
    t.join()
    return (max(peak[0], used()) - base) / 1024


if __name__ == "__main__":
    print(f"{peak_session_kb(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])):.3f}")
