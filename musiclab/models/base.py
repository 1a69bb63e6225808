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


def mlp_head(n_in: int, sizes: list[int], n_out: int, dropout: float, act: nn.Module | None = None) -> nn.Sequential:
    """Dense -> activation -> dropout for each of ``sizes``, then a Dense to ``n_out``."""
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(n_in, size), act or nn.ReLU(), nn.Dropout(dropout)]
        n_in = size
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)
