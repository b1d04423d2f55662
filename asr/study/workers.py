"""The worker processes of a study run with `--jobs N` (asr/study/compare.py): one torch thread each, and none outliving
the study. Kept apart from asr/study/compare.py so that starting one imports torch only, not Lightning."""
from __future__ import annotations

import os
import signal
import sys


def start_worker() -> None:
    """Sets up a worker: one torch thread (jobs side by side must not fight over the cores: each OpenMP pool spins),
    and it dies with the study. Killed alone, a study left its workers training on, into the run folders of the
    study started again; on Linux the kernel now sends each worker SIGKILL when the study's process ends."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the study died before the line above
            os._exit(1)
    import torch

    torch.set_num_threads(1)


def worker_pool(workers: int):
    """`workers` fresh interpreters (spawned: no forked OpenMP or Lightning state), each set up by start_worker."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=start_worker)
