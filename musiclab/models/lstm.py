"""Paper C (Joshi et al. 2022): LSTM 512 -> Dropout -> LSTM 512 -> Dense 512 -> Dropout ->
Dense 256 -> Dropout -> Dense V (softmax).

Changes from the paper, and why: an embedding replaces the scaled-integer input (ids are
categories, not magnitudes); the stack runs causally over the whole window so every
position is a training target (the paper trains on the last position only, 100x less
signal per window); ReLU between the dense layers (stacked linear layers collapse into one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .base import MusicModel, mlp_head, repeat_rows
from .fast import packed_linear


@dataclass
class LSTMConfig:
    vocab_size: int = 721  # ids of the tokenizer
    block_size: int = 100  # training window in tokens (paper: 100)
    n_embd: int = 128  # embedding width
    hidden: int = 512  # units per LSTM layer (paper: 512)
    n_layer: int = 2  # stacked LSTM layers (paper: 2)
    dense: list[int] = field(default_factory=lambda: [512, 256])  # dense layers after the LSTMs (paper)
    dropout: float = 0.3  # between LSTMs and after each dense layer


class LSTMModel(MusicModel):
    causal = True
    description = (
        "Paper C's stack, layer for layer: LSTM 512 -> Dropout -> LSTM 512 -> Dense 512 -> Dropout -> Dense 256 "
        "-> Dropout -> Dense V. Changes: an embedding (128) instead of scaled integer input; every position of "
        "the 100-token window is a training target (causal), so generation carries (h, c) token by token instead "
        "of re-reading the window; ReLU between the dense layers; note/shift tokens with rhythm instead of the "
        "paper's fixed 0.5-beat step. The shipped shape is the paper's shape."
    )
    reference_shape = {"block_size": 100, "hidden": 512, "n_layer": 2, "dense": [512, 256], "dropout": 0.3}

    def __init__(self, config: LSTMConfig):
        super().__init__(config)
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.n_embd)
        self.lstm = nn.LSTM(c.n_embd, c.hidden, c.n_layer, batch_first=True, dropout=c.dropout if c.n_layer > 1 else 0)
        self.drop = nn.Dropout(c.dropout)
        self.head = mlp_head(c.hidden, c.dense, c.vocab_size, c.dropout)

    def _run(self, x, state=None):
        h, state = self.lstm(self.embed(x), state)  # (B, T, hidden)
        return self.head(self.drop(h)), state  # (B, T, V)

    def forward(self, x, targets=None):
        logits, _ = self._run(x)
        return logits, self.loss(logits, targets)

    def prefill(self, x, rows=None):
        """Prompt (B, T) ids -> (logits (B, V), state (h, c, (gates, head))); h, c (n_layer, B, hidden).
        With ``rows``: one prompt (1, T), logits and state for ``rows`` takes (B = rows)."""
        logits, (h, c) = self._run(x)
        h, c, gates = step_state(self.lstm, h, c, rows)
        head = [packed_linear(m.weight, m.bias, h.size(1)) for m in self.head if isinstance(m, nn.Linear)]
        return repeat_rows(logits[:, -1], rows), (h, c, (gates, head))

    def step(self, x_t, state):
        """One id per row x_t (B,) -> (logits (B, V), state)."""
        h, c, (gates, head) = state
        x, h, c = lstm_step(F.embedding(x_t, self.embed.weight), h, c, gates)  # x (B, hidden)
        for j, lin in enumerate(head):  # dense layers with ReLU between (dropout is off in eval)
            x = lin(x) if j == len(head) - 1 else torch.relu(lin(x))
        return x, (h, c, (gates, head))


def step_state(lstm: nn.LSTM, h: torch.Tensor, c: torch.Tensor, rows: int | None):
    """``lstm``'s (h, c) (n_layer, B, hidden) after a prompt -> (h, c, gate kernels) for
    ``lstm_step``; with ``rows``, the one prompt's state (B = 1) copied for ``rows`` takes."""
    h, c = repeat_rows(h, rows, 1), repeat_rows(c, rows, 1)
    return h, c, lstm_gates(lstm, h.size(1))


def lstm_gates(lstm: nn.LSTM, batch: int) -> list:
    """Per layer of ``lstm``, one linear over [input, h] giving the four gates (both biases
    summed), prepacked for ``batch`` rows (``packed_linear``): the one-token step of
    ``lstm_step``, which costs about the same for 1 or 4 rows where nn.LSTM's costs ~4x."""
    return [
        packed_linear(
            torch.cat([getattr(lstm, f"weight_ih_l{i}"), getattr(lstm, f"weight_hh_l{i}")], 1),
            getattr(lstm, f"bias_ih_l{i}") + getattr(lstm, f"bias_hh_l{i}"),
            batch,
        )
        for i in range(lstm.num_layers)
    ]


def lstm_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, gates: list):
    """One time step of a stacked nn.LSTM (eval: no dropout between layers): x (B, in), h and c
    (n_layer, B, hidden) -> (top layer's output (B, hidden), h, c). Gate order i, f, g, o."""
    hs, cs = [], []
    for layer, lin in enumerate(gates):
        i, f, g, o = lin(torch.cat([x, h[layer]], 1)).chunk(4, 1)
        cs.append(torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g))
        x = torch.sigmoid(o) * torch.tanh(cs[-1])
        hs.append(x)
    return x, torch.stack(hs), torch.stack(cs)
