"""The models' fast paths, with one off switch: ``MUSICLAB_FAST=0`` (musiclab/settings.py).

Each path but one computes the same maths as the plain PyTorch call it replaces, so the takes are
the same with the switch on or off (tests/test_fast.py); off is for checking that, and for a torch
build where a path misbehaves. The one: a model too big for the cache (the flagship) steps in bf16
on a CPU with bf16 arithmetic, as models step in half precision on a GPU. Measurements behind
each: docs/performance.md.

* ``packed_linear``: a generation step's linear with its weight prepacked for oneDNN once (on: a
  step costs about the same for 1 or 4 takes; off: ``F.linear``); for a cold model, in bf16.
* ``bidirectional``: a window re-read runs a bidirectional layer's two directions at once, the
  backward one on torch's inter-op pool (on: two cores share the chain of tiny steps; off: ``rnn(x)``).
"""

from __future__ import annotations

import threading
import warnings
from typing import List  # noqa: UP035 (TorchScript reads typing.List)

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import current


def enabled() -> bool:
    return current().fast


# ---- prepacked linear ----


def _onednn_linear_ok() -> bool:
    """Whether oneDNN's prepacked fp32 linear is usable here (and agrees with F.linear)."""
    global _ONEDNN_OK
    if _ONEDNN_OK is None:
        try:
            w, b, x = torch.randn(8, 16), torch.randn(8), torch.randn(3, 16)
            wp = torch.ops.mkldnn._reorder_linear_weight(w, 3)
            y = torch.ops.mkldnn._linear_pointwise(x, wp, b, "none", [], "")
            _ONEDNN_OK = bool(torch.backends.mkldnn.is_available() and torch.allclose(y, F.linear(x, w, b), atol=1e-5))
        except (AttributeError, RuntimeError):
            _ONEDNN_OK = False
    return _ONEDNN_OK


_ONEDNN_OK: bool | None = None


def _onednn_bf16_ok() -> bool:
    """Whether oneDNN's prepacked bf16 linear runs here with the CPU's own bf16 arithmetic."""
    global _BF16_OK
    if _BF16_OK is None:
        try:
            native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()  # not emulated
            _BF16_OK = bool(native and _onednn_linear_ok() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
            if _BF16_OK:
                w, b, x = torch.randn(64, 64), torch.randn(64), torch.randn(3, 64)
                wp = torch.ops.mkldnn._reorder_linear_weight(w.bfloat16(), 3)
                y = torch.ops.mkldnn._linear_pointwise(x.bfloat16(), wp, b.bfloat16(), "none", [], "").float()
                _BF16_OK = bool(torch.allclose(y, F.linear(x, w, b), rtol=0.05, atol=0.1))
        except (AttributeError, RuntimeError):
            _BF16_OK = False
    return _BF16_OK


_BF16_OK: bool | None = None


def packed_linear(weight: torch.Tensor, bias: torch.Tensor | None, batch: int, cold: bool = False, bf16: bool = True):
    """``x (batch, in) -> x @ weight.T + bias`` for generation steps. On CPU in fp32, weights big
    enough to repay oneDNN's fixed cost per call are prepacked once (at one row only large
    products: MKL's matrix-vector product wins below ~1 M multiply-adds; at 2+ rows every weight
    of 16 K+ entries, as MKL's small products cost ~linearly in the rows). The rest: F.linear.
    ``cold``: the model's step reads more weights than the cache holds (the flagship): every
    weight of 16 K+ entries is packed for 4 rows, whatever the batch (a 1-row step 1.3-1.7x faster,
    and each row comes out the same bits for 1 to 8 rows, tested: docs/flagship.md), in bf16 where
    the CPU has bf16 arithmetic and ``bf16``: half the bytes to read, so the output is bf16 (x is
    rounded to bf16 element by element, the sums are fp32: still the same bits for a row in any batch)."""
    rows = min(batch, 4)
    big = weight.numel() * rows >= 1 << 20 or ((rows >= 2 or cold) and weight.numel() >= 1 << 14)
    if enabled() and big and weight.device.type == "cpu" and weight.dtype == torch.float32 and _onednn_linear_ok():
        if cold and bf16 and _onednn_bf16_ok():
            wp, bf = torch.ops.mkldnn._reorder_linear_weight(weight.detach().bfloat16(), 4), torch.bfloat16
            b = None if bias is None else bias.detach().bfloat16()
            return lambda x: torch.ops.mkldnn._linear_pointwise(x.to(bf), wp, b, "none", [], "")
        wp = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 4 if cold else batch)
        b = None if bias is None else bias.detach()
        return lambda x: torch.ops.mkldnn._linear_pointwise(x, wp, b, "none", [], "")
    return lambda x: F.linear(x, weight, bias)


# ---- two directions at once ----


def script(fn):
    """``torch.jit.script(fn)``, quietly: the directions need TorchScript's ``fork`` (eager
    ``torch.jit.fork`` runs inline), and torch's deprecation notice is not news a user can act
    on. If scripting fails, ``fn`` itself (the fork then runs inline: same maths)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.script(fn)
        except Exception:  # a torch without TorchScript: the same maths in Python
            return fn


def _direction(kind: str, x: torch.Tensor, h0: torch.Tensor, params: List[torch.Tensor]) -> torch.Tensor:  # noqa: UP006
    """One direction of one RNN layer over (B, T, in) -> (B, T, H); ``params`` = w_ih, w_hh, b_ih, b_hh."""
    if kind == "gru":
        return torch.gru(x, h0, params, True, 1, 0.0, False, False, True)[0]
    return torch.lstm(x, [h0, h0], params, True, 1, 0.0, False, False, True)[0]


def _both_directions(
    kind: str,
    x: torch.Tensor,
    h0: torch.Tensor,
    forward: List[torch.Tensor],  # noqa: UP006
    backward: List[torch.Tensor],  # noqa: UP006
) -> torch.Tensor:
    later = torch.jit.fork(_direction, kind, x.flip(1), h0, backward)  # on the inter-op thread pool
    y = _direction(kind, x, h0, forward)
    return torch.cat([y, torch.jit.wait(later).flip(1)], 2)


def _busy(x: torch.Tensor) -> torch.Tensor:
    for _ in range(20):
        x = x @ x
    return x


def _fork_all(x: torch.Tensor, n: int) -> torch.Tensor:
    tasks = [torch.jit.fork(_busy, x) for _ in range(n)]
    return torch.stack([torch.jit.wait(t) for t in tasks])


_direction = script(_direction)
_both_directions = script(_both_directions)
_fork_all = script(_fork_all)
_pool_lock = threading.Lock()
_pool_ready = False


def _ready_pool() -> None:
    """Start torch's inter-op pool with one intra-op thread per pool thread, once per process: a
    pool thread keeps the count of the moment it starts, and a pool started while a generation
    runs alone on more threads (generation/threads.py) would oversubscribe every later re-read."""
    global _pool_ready
    if _pool_ready:
        return
    with _pool_lock:
        if _pool_ready:
            return
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _fork_all(torch.eye(8), 4 * torch.get_num_interop_threads())  # each pool thread takes a task
        finally:
            torch.set_num_threads(prev)
        _pool_ready = True


def bidirectional(rnn: nn.LSTM | nn.GRU, x: torch.Tensor) -> torch.Tensor:
    """``rnn(x)[0]`` for a one-layer bidirectional ``nn.LSTM``/``nn.GRU``: (B, T, in) -> (B, T, 2H).

    Without autograd on a CPU, the two directions run at the same time, the backward one on the
    inter-op pool: a window re-read is a chain of tiny steps that one core runs no faster than
    two. Same maths, same weights as ``rnn``."""
    plain = rnn.num_layers != 1 or not rnn.bidirectional or not rnn.batch_first or not rnn.bias
    plain = plain or getattr(rnn, "proj_size", 0) or not enabled()
    if plain or torch.is_grad_enabled() or x.device.type != "cpu" or torch.get_num_interop_threads() < 2:
        return rnn(x)[0]
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    params = [[getattr(rnn, n + sfx) for n in names] for sfx in ("", "_reverse")]
    _ready_pool()
    h0 = x.new_zeros(1, x.size(0), rnn.hidden_size)
    return _both_directions("gru" if isinstance(rnn, nn.GRU) else "lstm", x, h0, *params)
