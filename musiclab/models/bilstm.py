"""Paper A (Gokcay): a window of ids -> three BiLSTM layers, each followed by BatchNorm ->
LeakyReLU(0.2) -> Dropout -> Dense 128 -> BN -> LeakyReLU -> Dropout -> Dense V (softmax).

A window model (``causal = False``): ``forward`` reads the last ``block_size`` ids and
predicts the one id after them. The bidirectional layers read only that past window, so
there is no look-ahead. Generation re-reads the window each step (base.py's default
prefill/step), so the window and the layers are kept small for speed.

This module also holds the helpers the other window models share (``fit_window``,
``SeqBatchNorm``, ``last_states``, ``bidirectional``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import List  # noqa: UP035 (TorchScript reads typing.List)

import torch
from torch import nn

from .base import PAD, MusicModel, script


def fit_window(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """(B, T) ids -> (B, block_size): keep the last ``block_size`` ids; left-pad shorter
    windows with PAD, as the dataset does for windows near the start of a file."""
    if x.dim() != 2:
        raise ValueError(f"expected (B, T) token ids, got shape {tuple(x.shape)}")
    if x.size(1) >= block_size:
        return x[:, -block_size:]
    return nn.functional.pad(x, (block_size - x.size(1), 0), value=PAD)


class SeqBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the channels of a (B, T, C) sequence (statistics over B and T)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def last_states(out: torch.Tensor, hidden: int) -> torch.Tensor:
    """Keras ``return_sequences=False`` for a bidirectional layer: (B, T, 2H) -> (B, 2H) =
    the forward direction after the newest id + the backward direction after the oldest."""
    return torch.cat([out[:, -1, :hidden], out[:, 0, hidden:]], dim=-1)


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
    """Start torch's inter-op pool with one intra-op thread per pool thread. A pool thread takes
    the process-wide count of the moment it starts (and keeps it), and generate() may raise that
    count for a recurrent model running alone (generation.sampling.engine_threads): a pool started then runs
    every later window re-read 2.5x slower (measured, bigru, 2 vs 1). Once per process."""
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

    Without autograd on a CPU, the two directions run at the same time, the backward one on
    the inter-op thread pool: a window re-read is a chain of tiny steps that one core runs no
    faster than two, so two cores nearly halve it (measured, bigru 2 x 128, 40-token window,
    one intra-op thread: 2.5 -> 1.5 ms). Same maths, same weights as ``rnn``."""
    plain = rnn.num_layers != 1 or not rnn.bidirectional or not rnn.batch_first or not rnn.bias
    plain = plain or getattr(rnn, "proj_size", 0)
    if plain or torch.is_grad_enabled() or x.device.type != "cpu" or torch.get_num_interop_threads() < 2:
        return rnn(x)[0]
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    params = [[getattr(rnn, n + sfx) for n in names] for sfx in ("", "_reverse")]
    _ready_pool()
    h0 = x.new_zeros(1, x.size(0), rnn.hidden_size)
    return _both_directions("gru" if isinstance(rnn, nn.GRU) else "lstm", x, h0, *params)


@dataclass
class BiLSTMConfig:
    vocab_size: int = 721  # ids of the tokenizer
    block_size: int = 64  # window in tokens (paper: 100; shorter = faster generation)
    n_embd: int = 64  # embedding width (the paper feeds scaled integers instead)
    hidden: list[int] = field(default_factory=lambda: [64, 128, 64])  # units per direction, per BiLSTM (paper)
    dense: int = 128  # width of the dense layer before the output (paper: 128)
    dropout: float = 0.1  # after every block (paper: 0.7)
    leak: float = 0.2  # LeakyReLU negative slope (paper: 0.2)
    dense_l2: float = 0.004  # L2 penalty on the Dense 128 weights, added to the training loss (paper: 0.004)


class BiLSTMModel(MusicModel):
    causal = False
    description = (
        "Paper A's recipe: BiLSTM 64 (seq) -> BN -> LeakyReLU(0.2) -> Dropout -> BiLSTM 128 (seq) -> BN -> "
        "LeakyReLU -> Dropout -> BiLSTM 64 (last) -> BN -> LeakyReLU -> Dropout -> Dense 128 (L2 0.004) -> BN -> "
        "LeakyReLU -> Dropout -> Dense V, with the paper's layer widths. Changes: an embedding (64) instead of "
        "scaled integer ids (ids are categories, not magnitudes); a window of 64 tokens instead of 100 "
        "(generation re-reads the window every step, so it sets the speed); dropout 0.1 instead of 0.7 (a "
        "22-minute CPU budget sees less than one pass over the corpus, so there is little to regularise, and 0.7 "
        "on 64-unit layers underfits); Adam lr 2e-3 instead of the paper's 1e-6 (at 1e-6 the loss barely moves "
        "in 200 epochs); BatchNorm runs over the channels of the (B, C, T) sequences. Bidirectional layers read "
        "only the past window: no look-ahead."
    )
    reference_shape = {"block_size": 100, "hidden": [64, 128, 64], "dense": 128, "dropout": 0.7, "dense_l2": 0.004}

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        c = config
        if not c.hidden:
            raise ValueError("expected at least one BiLSTM layer in hidden, got []")
        self.embed = nn.Embedding(c.vocab_size, c.n_embd, padding_idx=PAD)
        self.rnns, self.norms = nn.ModuleList(), nn.ModuleList()
        n_in = c.n_embd
        for h in c.hidden:
            self.rnns.append(nn.LSTM(n_in, h, batch_first=True, bidirectional=True))
            self.norms.append(SeqBatchNorm(2 * h))
            n_in = 2 * h
        self.act, self.drop = nn.LeakyReLU(c.leak), nn.Dropout(c.dropout)
        self.dense = nn.Linear(n_in, c.dense)
        self.dense_norm = nn.BatchNorm1d(c.dense)
        self.out = nn.Linear(c.dense, c.vocab_size)

    def forward(self, x, targets=None):
        h = self.embed(fit_window(x, self.config.block_size))  # (B, T, n_embd)
        for i, (rnn, norm) in enumerate(zip(self.rnns, self.norms)):
            h = bidirectional(rnn, h)  # (B, T, 2H)
            if i == len(self.rnns) - 1:
                h = last_states(h, rnn.hidden_size).unsqueeze(1)  # (B, 1, 2H)
            h = self.drop(self.act(norm(h)))
        h = self.drop(self.act(self.dense_norm(self.dense(h[:, 0]))))  # (B, dense)
        logits = self.out(h).unsqueeze(1)  # (B, 1, V)
        loss = self.loss(logits, targets)
        if loss is not None and self.training and self.config.dense_l2:
            loss = loss + self.config.dense_l2 * self.dense.weight.pow(2).sum()
        return logits, loss


ARCHS = {"bilstm": (BiLSTMModel, BiLSTMConfig)}
