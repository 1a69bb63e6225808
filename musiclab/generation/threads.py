"""Threads: how many intra-op threads a process, a generation and a training run use.

A small box shared by several sessions (or a training run) is slowest when OpenMP threads spin
against each other, so a process starts with one intra-op thread (``serving_threads``); a
generation raises its own count only while it runs alone (``engine_threads``, set for the call
by ``intra_op_threads``). ``MUSICLAB_THREADS`` overrides all of them. Figures: docs/performance.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager

import torch

from ..settings import current


def serving_threads() -> None:
    """For the app and the CLI: one intra-op thread per OS thread unless ``MUSICLAB_THREADS`` says more."""
    torch.set_num_threads(current().threads or 1)


def training_threads() -> None:
    """For training: torch's default (every core) unless ``MUSICLAB_THREADS`` says otherwise."""
    if current().threads:
        torch.set_num_threads(current().threads)


def engine_threads(model, alone: bool = True) -> int:
    """Intra-op threads for one generation of a LoadedModel. ``MUSICLAB_THREADS`` (if set) wins.
    Otherwise, on a CPU, a model whose step is a few large kernels (recurrent and Transformer,
    ``causal``) uses every core (at most 4) while it is the only generation running, and one core
    when others share the box. Window models (``causal`` False) keep one: their step already runs
    its two directions on two cores (models/fast.py), and more threads oversubscribe the cores."""
    if current().threads:
        return current().threads
    if not alone or not model.net.causal or model.device.type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


@contextmanager
def intra_op_threads(threads: int | Callable[[], int] | None):
    """Set this OS thread's intra-op thread count (torch keeps it per thread) for a ``with``
    body, restore it after; yields ``update()``, which asks a callable ``threads`` again."""
    prev = torch.get_num_threads()

    def update() -> None:
        if threads is not None:
            n = max(1, int(threads() if callable(threads) else threads))
            if n != torch.get_num_threads():
                torch.set_num_threads(n)

    update()
    try:
        yield update
    finally:
        if torch.get_num_threads() != prev:
            torch.set_num_threads(prev)
