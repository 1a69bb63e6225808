"""Paper B, model 3b (Rocco, Colangelo, Rosatelli; their best, val loss 4.71): a window of
ids -> BiLSTM 256 -> self-attention over its outputs -> LSTM 128 -> Dropout 0.3 -> Dense V.

A window model (``causal = False``): ``forward`` reads the last ``block_size`` ids and
predicts the one id after them. The BiLSTM and the attention read only that past window
(every position may attend to every other position *inside* it), so there is no look-ahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import PAD, MusicModel
from .bilstm import fit_window
from .fast import bidirectional


class WindowSelfAttention(nn.Module):
    """Single-head dot-product self-attention over a (B, T, C) sequence; the values are the
    inputs themselves (as in Keras' SeqSelfAttention), PAD positions are never attended to."""

    def __init__(self, n_in: int, n_attn: int):
        super().__init__()
        self.q, self.k = nn.Linear(n_in, n_attn), nn.Linear(n_in, n_attn)

    def forward(self, h: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        # h (B, T, C); pad (B, T) True where the window is left padding
        att = self.q(h) @ self.k(h).transpose(1, 2) / math.sqrt(self.q.out_features)  # (B, T, T)
        # a large negative rather than -inf: an all-PAD row then gets uniform weights, not NaN
        att = att.masked_fill(pad.unsqueeze(1), torch.finfo(att.dtype).min)
        return torch.softmax(att, dim=-1) @ h  # (B, T, C)


@dataclass
class AttentionConfig:
    vocab_size: int = 721  # ids of the tokenizer
    block_size: int = 48  # window in tokens (paper: 100; shorter = faster generation)
    n_embd: int = 64  # embedding width (the paper feeds scaled integers instead)
    hidden: int = 128  # BiLSTM units per direction (paper: 256)
    n_attn: int = 64  # query/key width of the attention
    residual: bool = True  # add the attention output to its input (the paper replaces it)
    lstm: int = 128  # units of the LSTM that reads the attended sequence (paper: 128)
    dropout: float = 0.1  # before the output layer (paper: 0.3)


class AttentionModel(MusicModel):
    causal = False
    description = (
        "Paper B's model 3b: BiLSTM -> attention over its outputs -> LSTM 128 -> Dropout -> Dense V. Changes: "
        "an embedding (64) instead of scaled integer ids; BiLSTM 128 per direction instead of 256 and a window "
        "of 48 tokens instead of 100 (generation re-reads the window every step, and the 256-wide BiLSTM is ~3x "
        "slower per step on a CPU); the attention output is added to its input (residual), which keeps each "
        "position's own features and trains faster; PAD positions are masked out of the attention; dropout 0.1 "
        "instead of 0.3 (a 22-minute CPU budget sees less than one pass over the corpus). Bidirectional layers "
        "read only the past window: no look-ahead."
    )
    reference_shape = {"block_size": 100, "hidden": 256, "n_attn": 256, "residual": False, "lstm": 128, "dropout": 0.3}

    def __init__(self, config: AttentionConfig):
        super().__init__(config)
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.n_embd, padding_idx=PAD)
        self.bilstm = nn.LSTM(c.n_embd, c.hidden, batch_first=True, bidirectional=True)
        self.attn = WindowSelfAttention(2 * c.hidden, c.n_attn)
        self.lstm = nn.LSTM(2 * c.hidden, c.lstm, batch_first=True)
        self.drop = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.lstm, c.vocab_size)

    def forward(self, x, targets=None):
        x = fit_window(x, self.config.block_size)
        h = bidirectional(self.bilstm, self.embed(x))  # (B, T, 2H)
        a = self.attn(h, x == PAD)  # (B, T, 2H)
        h = h + a if self.config.residual else a
        _, (h_n, _) = self.lstm(h)  # h_n (1, B, lstm): the state after the newest id
        logits = self.out(self.drop(h_n[-1])).unsqueeze(1)  # (B, 1, V)
        return logits, self.loss(logits, targets)


ARCHS = {"lstm-attention": (AttentionModel, AttentionConfig)}
