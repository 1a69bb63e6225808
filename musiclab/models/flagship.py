"""The flagship: a decoder-only Transformer over bar/note tokens that continues, infills and accompanies.

The same blocks, RoPE and sliding-window KV cache as transformer-remi (models/transformer.py),
at a larger shape with a 1,024-token context, over the bar/note vocabulary
(musiclab/codecs/barnote.py: one token per note, so 1,024 tokens hold about a minute of piano).
One model serves three jobs through its token streams: continue a seed, fill a span between a
prefix and a suffix (``INFILL suffix FILL_k prefix MID middle EOM``), and write an accompaniment
bar by bar under a given melody (``BAR MEL ... ACC ...``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .transformer import TransformerConfig, TransformerModel


@dataclass
class FlagshipConfig(TransformerConfig):
    vocab_size: int = 4481  # bar/note ids (BarNoteCodec().vocab_size)
    block_size: int = 1024  # context and KV-cache window, tokens (~1 min of piano)
    n_layer: int = 6
    n_head: int = 4  # head size 64
    n_embd: int = 256  # width: a step reads 23.5 MB of fp32 weights (more than the cache holds: docs/flagship.md)
    n_ff: int = 1024
    dropout: float = 0.1  # residual branches only
    attn_dropout: float | None = 0.0  # 0 keeps the fused attention kernel in training


class FlagshipModel(TransformerModel):
    description = (
        "musiclab's flagship: a decoder-only Transformer (6 layers, 4 query heads sharing one key/value "
        "head, d 256, context 1,024, RoPE, KV cache) over bar/note tokens (one token per note: pitch, "
        "duration, velocity; bar and beat positions; 12 steps a beat). Trained on piano-midi.de, ASAP and POP909 with transposition, "
        "velocity and tempo augmentation, to continue, infill a span, and accompany a melody."
    )
    reference_shape = None


ARCHS = {"flagship": (FlagshipModel, FlagshipConfig)}
