"""The one model interface every architecture implements, so one generator serves all.

Shapes: ``B`` batch, ``T`` time steps (tokens or piano-roll frames), ``V`` vocabulary
size (or 88 keys for piano-roll models).

* ``forward(x, targets=None) -> (logits, loss)``
  - causal models (``causal = True``): ``x`` (B, T) -> logits (B, T, V), a prediction
    of the next token at every position; ``targets`` (B, T).
  - window models (``causal = False``, the bidirectional ones): ``x`` (B, T) is a past
    window, logits (B, 1, V) predict the one token after it; ``targets`` (B, 1).
    Bidirectional layers only ever see the past window: there is no look-ahead.
* ``prefill(x, rows=None) -> (logits (B, V), state)`` reads a prompt and returns the
  prediction for the next token plus whatever ``step`` needs. With ``rows``, ``x`` is one
  prompt (1, T) read once, and logits and state come back for ``rows`` takes (B = rows):
  variations share their prompt, so it is not read B times.
* ``step(x_t, state) -> (logits (B, V), state)`` consumes one new token per row
  (``x_t`` (B,)) and predicts the next. Recurrent models carry (h, c); the Transformer a
  KV cache; window models a rolling window that they re-read.
* ``get_block_size()``: the context (tokens) the model was trained on.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

PAD = 0  # never a training target


class MusicModel(nn.Module):
    causal: bool = True
    output: str = "categorical"  # or "multi-hot" (piano-roll: per-key sigmoid)
    # fp16 weights and activations on a CUDA GPU (serving.weights.load_model); False keeps fp32 there.
    half_on_gpu: bool = True

    def __init__(self, config):
        super().__init__()
        self.config = config

    def get_block_size(self) -> int:
        return self.config.block_size

    def loss(self, logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
        if targets is None:
            return None
        if self.output == "multi-hot":
            return F.binary_cross_entropy_with_logits(logits, targets.float())
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=PAD)

    # Default incremental API for window models: keep the last block_size tokens, re-read them.
    def prefill(self, x: torch.Tensor, rows: int | None = None):
        window = x[:, -self.get_block_size() :]
        logits, _ = self(window)
        return repeat_rows(logits[:, -1], rows), repeat_rows(window, rows)

    def step(self, x_t: torch.Tensor, state):
        window = torch.cat([state, x_t.unsqueeze(1)], dim=1)[:, -self.get_block_size() :]
        logits, _ = self(window)
        return logits[:, -1], window

    def naive_step(self, history: torch.Tensor) -> torch.Tensor:
        """What the papers do: re-run the whole last window for every new token. (B, V)."""
        logits, _ = self(history[:, -self.get_block_size() :])
        return logits[:, -1]


def repeat_rows(t: torch.Tensor, rows: int | None, dim: int = 0) -> torch.Tensor:
    """A state or logits tensor of one prompt (size 1 along ``dim``) -> ``rows`` copies along it."""
    if rows is None:
        return t
    if t.size(dim) != 1:
        raise ValueError(f"expected one prompt (size 1 on dim {dim}) to repeat, got shape {tuple(t.shape)}")
    return t.repeat_interleave(rows, dim)


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


def packed_linear(weight: torch.Tensor, bias: torch.Tensor | None, batch: int):
    """``x (batch, in) -> x @ weight.T + bias`` for generation steps. On CPU in fp32, a weight is
    prepacked for oneDNN once, and a step then costs about the same for 1 or 4 rows (measured, one
    thread, 2048 x 1024: 0.10 / 0.14 ms at 1 / 4 rows vs MKL's 0.12 / 0.50 ms). A oneDNN call has
    ~15 us of fixed cost, so at one row only large products (>= 1 M multiply-adds) are packed: MKL's
    matrix-vector product wins below that. At 2+ rows MKL's small-matrix product costs ~linearly in
    the rows, so every weight of 16 K+ entries is packed: transformer-remi, 4 takes, 1.77 against
    2.52 ms a step (median of 4 rounds, interleaved; lstm and the piano-roll models unchanged).
    Everything off the CPU or not in fp32 stays with F.linear."""
    rows = min(batch, 4)
    big = weight.numel() * rows >= 1 << 20 or (rows >= 2 and weight.numel() >= 1 << 14)
    if big and weight.device.type == "cpu" and weight.dtype == torch.float32 and _onednn_linear_ok():
        wp = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch)
        b = None if bias is None else bias.detach()
        return lambda x: torch.ops.mkldnn._linear_pointwise(x, wp, b, "none", [], "")
    return lambda x: F.linear(x, weight, bias)


def script(fn):
    """``torch.jit.script(fn)``, quietly: window re-reads use TorchScript for its ``fork`` (eager
    ``torch.jit.fork`` runs inline); torch 2.13 flags TorchScript as deprecated, which is not news
    a user can act on. If scripting fails, ``fn`` itself (then the fork runs inline: same maths)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.script(fn)
        except Exception:  # a torch without TorchScript: the same maths in Python (fork then runs inline)
            return fn


def mlp_head(n_in: int, sizes: list[int], n_out: int, dropout: float, act: nn.Module | None = None) -> nn.Sequential:
    """Dense -> activation -> dropout for each of ``sizes``, then a Dense to ``n_out``."""
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(n_in, size), act or nn.ReLU(), nn.Dropout(dropout)]
        n_in = size
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)
