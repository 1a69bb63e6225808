"""Paper D (Zhou): a window of ids -> Embedding -> stacked bidirectional GRU layers, each
followed by Dropout 0.2 -> Dense V (softmax); the paper reads windows of 40 notes.

A window model (``causal = False``): ``forward`` reads the last ``block_size`` ids and
predicts the one id after them. The paper's 98.5% validation accuracy points to
look-ahead leakage; here the bidirectional layers read only the past window, and the
card reports honest held-out figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import PAD, MusicModel
from .bilstm import fit_window, last_states
from .fast import bidirectional


@dataclass
class BiGRUConfig:
    vocab_size: int = 721  # ids of the tokenizer
    block_size: int = 40  # window in tokens (paper: 40)
    n_embd: int = 64  # embedding width
    hidden: int = 128  # GRU units per direction, every layer (paper: not stated)
    n_layer: int = 2  # stacked bidirectional GRU layers (paper: "stacked", count not stated)
    dropout: float = 0.1  # after each GRU layer (paper: 0.2)


class BiGRUModel(MusicModel):
    causal = False
    description = (
        "Paper D's recipe: Embedding -> stacked bidirectional GRU layers, Dropout after each -> Dense V, over "
        "windows of 40 tokens (the paper's). The paper states neither the number of layers nor their width: we "
        "ship 2 x 128 per direction (reference_shape guesses 2 x 256). Dropout 0.1 instead of 0.2 (a 22-minute "
        "CPU budget sees less than one pass over the corpus). The last layer returns its final states (forward "
        "after the newest id, backward after the oldest), as Keras does without return_sequences. Ids are our "
        "note/shift tokens (pitch + duration, time shifts) rather than bare pitches, so rhythm is learned too. "
        "Bidirectional layers read only the past window: no look-ahead (the paper's 98.5% validation accuracy "
        "cannot be reached honestly)."
    )
    reference_shape = {"block_size": 40, "hidden": 256, "n_layer": 2, "dropout": 0.2}

    def __init__(self, config: BiGRUConfig):
        super().__init__(config)
        c = config
        if c.n_layer < 1:
            raise ValueError(f"expected n_layer >= 1, got {c.n_layer}")
        self.embed = nn.Embedding(c.vocab_size, c.n_embd, padding_idx=PAD)
        self.grus = nn.ModuleList(
            nn.GRU(c.n_embd if i == 0 else 2 * c.hidden, c.hidden, batch_first=True, bidirectional=True)
            for i in range(c.n_layer)
        )
        self.drop = nn.Dropout(c.dropout)
        self.out = nn.Linear(2 * c.hidden, c.vocab_size)

    def forward(self, x, targets=None):
        h = self.embed(fit_window(x, self.config.block_size))  # (B, T, n_embd)
        for gru in self.grus:
            h = bidirectional(gru, h)  # (B, T, 2H)
            h = self.drop(h)
        logits = self.out(last_states(h, self.config.hidden)).unsqueeze(1)  # (B, 1, V)
        return logits, self.loss(logits, targets)


ARCHS = {"bigru": (BiGRUModel, BiGRUConfig)}
