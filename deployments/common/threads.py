"""CPU thread settings for engines that run torch or CTranslate2 on the CPU."""

from __future__ import annotations


def set_torch_threads(num_threads: int | None) -> None:
    """Pin torch's intra-op threads; None keeps what Ray set (OMP_NUM_THREADS = the replica's CPUs).

    Ray sets OMP_NUM_THREADS from a replica's integer CPU count (at least 1), so a replica with
    a fractional CPU would run single-threaded even on an idle machine: recipes say how many
    threads an engine really gets.
    """
    if num_threads is None:
        return
    import torch

    torch.set_num_threads(num_threads)
