"""Paper E (Rao & Xie): a decoder-only, causal Transformer over REMI events.

nanoGPT-style blocks: pre-LayerNorm -> causal self-attention (F.scaled_dot_product_attention)
-> residual, pre-LayerNorm -> MLP (GELU) -> residual; a final LayerNorm and a linear head.

Changes from the paper, and why:
* rotary position embeddings (RoPE) instead of learned absolute positions: attention then
  depends only on the distance between tokens, so a **sliding-window KV cache** stays
  valid when a take grows past ``block_size`` (the paper re-runs a sliding window for
  every token; we append one token per step and drop the oldest cache entry);
* a CPU-trainable shape ships (4 layers, 4 heads, d 192, FF 768, context 256); the
  paper's large shape (``reference_shape``: 12 layers, 8 heads, d 1024, FF 2048, 512
  tokens) is built by the same code from a config;
* sampling goes through REMI grammar masks (musiclab/remi.py), so no bar is left without
  notes and every take reaches its asked length (the paper's failure mode).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import fast
from .base import MusicModel, repeat_rows
from .fast import packed_linear


@dataclass
class TransformerConfig:
    vocab_size: int = 146  # ids of the REMI tokenizer (musiclab/remi.py defaults)
    block_size: int = 256  # training context in tokens, and the KV-cache window (paper: 512)
    n_layer: int = 4  # decoder blocks (paper large: 12, small: 2)
    n_head: int = 4  # attention heads per block (paper: 8)
    n_embd: int = 192  # model width d (paper: 1024); small so CPU sampling stays fast
    n_ff: int = 768  # MLP hidden width, 4 d (paper: 2048)
    dropout: float = 0.1  # on attention weights and residual branches, training only
    rope_base: float = 10000.0  # RoPE frequency base: head dim pair i turns at base^(-2i/hd) rad/token
    attn_dropout: float | None = None  # on attention weights (None: ``dropout``); 0 keeps SDPA's fused kernel
    n_kv_head: int | None = None  # key/value heads (None: n_head); fewer: grouped-query attention, a smaller KV cache


CACHE_BYTES = 8 << 20  # ~ the cache this VM's step finds (1 MB products slow past 8 MB read in turn: docs/flagship.md)
_COLD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (its weights' stamp, _cold_weights)


class KVCache:
    """Per-layer keys/values of the last ``block_size`` tokens, a ring buffer.

    ``k``/``v``: (n_layer, B, n_kv_head, block_size, head_dim). ``pos``: tokens seen so far
    (the RoPE position of the next token). Slot ``pos % block_size`` holds the newest
    entry; once full, each new token overwrites the oldest (the sliding window). Keys carry
    their own rotation, so their order in the buffer does not matter to attention.
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor, pos: int, weights: list | None = None):
        self.k, self.v, self.pos = k, v, pos
        self.weights = weights  # per layer Block.step_weights(batch), then the embedding, final norm and head

    def __len__(self) -> int:
        return min(self.pos, self.k.size(3))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on the last dim of ``x`` (B, T, heads, hd); cos/sin (T, 1, hd/2) broadcast over heads."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.n_head, self.n_kv = c.n_head, c.n_kv_head or c.n_head
        self.hd = c.n_embd // c.n_head
        self.attn_dropout = c.dropout if c.attn_dropout is None else c.attn_dropout
        self.ln_1 = nn.LayerNorm(c.n_embd)
        self.c_attn = nn.Linear(c.n_embd, c.n_embd + 2 * self.n_kv * self.hd)  # q, k, v in one matmul
        self.c_proj = nn.Linear(c.n_embd, c.n_embd)
        self.ln_2 = nn.LayerNorm(c.n_embd)
        self.mlp = nn.Sequential(nn.Linear(c.n_embd, c.n_ff), nn.GELU(), nn.Linear(c.n_ff, c.n_embd))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, cos, sin, cache: KVCache | None = None, layer: int = 0, mask: torch.Tensor | None = None):
        """x (B, T, C): causal attention over x (or ``mask`` (T, T) bool, True = may attend).
        With ``cache`` (a prefill into an empty cache), keys/values also go to slots 0..T-1."""
        B, T, C = x.shape
        q, k, v = self._qkv(self.c_attn(self.ln_1(x)), cos, sin)  # (B, T, nh | n_kv, hd)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, hd)
        if cache is not None:
            cache.k[layer, :, :, :T], cache.v[layer, :, :, :T] = k, v
        p = self.attn_dropout if self.training else 0.0
        gqa = self.n_kv < self.n_head  # query heads j*G .. j*G+G-1 share key/value head j
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=mask is None, enable_gqa=gqa)
        x = x + self.drop(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))
        return x + self.drop(self.mlp(self.ln_2(x)))

    def _qkv(self, qkv: torch.Tensor, cos, sin):
        """The c_attn output (B, T, (nh + 2 n_kv) hd) -> rotated q (B, T, nh, hd), rotated k and v (B, T, n_kv, hd)."""
        B, T, _ = qkv.shape
        h = self.n_head + self.n_kv
        x = qkv.view(B, T, h + self.n_kv, self.hd)
        qk = _rotate(x[:, :, :h], cos, sin)  # q and k heads turn together: one rotation
        return qk[:, :, : self.n_head], qk[:, :, self.n_head :], x[:, :, h:]

    def step_weights(self, batch: int, cold: bool = False) -> tuple:
        """What ``step`` uses, bound once per generation: LayerNorm tensors and the four linears
        as callables (oneDNN-prepacked for ``batch`` rows on CPU, or 4 at any batch when ``cold``:
        see ``packed_linear``)."""
        up, down = self.mlp[0], self.mlp[2]
        lin = [packed_linear(m.weight, m.bias, batch, cold) for m in (self.c_attn, self.c_proj, up, down)]
        return (self.ln_1.weight, self.ln_1.bias, self.ln_2.weight, self.ln_2.bias, *lin)

    def step(self, x, cos, sin, cache: KVCache, layer: int, w: tuple):
        """One new token per row, x (B, C) -> (B, C); the same maths as ``forward`` with
        functional calls on ``w`` = ``step_weights()`` (this runs once per layer per sampled token)."""
        ln1_w, ln1_b, ln2_w, ln2_b, attn, proj, up, down = w
        B, C = x.shape
        slot, n = cache.pos % cache.k.size(3), min(cache.pos + 1, cache.k.size(3))
        q, k, v = self._qkv(attn(F.layer_norm(x, (C,), ln1_w, ln1_b)).to(x.dtype).view(B, 1, -1), cos, sin)
        cache.k[layer, :, :, slot], cache.v[layer, :, :, slot] = k[:, 0], v[:, 0]
        # every cached entry is in the past: no mask needed. A key/value head's G query heads go in as
        # G query rows of one attention over its cache (grouped-query: the cache is read once for them)
        q = q.reshape(B, self.n_kv, self.n_head // self.n_kv, self.hd)  # (B, n_kv, G, hd)
        y = F.scaled_dot_product_attention(q, cache.k[layer, :, :, :n], cache.v[layer, :, :, :n])
        x = x + proj(y.reshape(B, C))  # y (B, n_kv, G, hd); a cold model's products are bf16, x stays fp32
        return x + down(F.gelu(up(F.layer_norm(x, (C,), ln2_w, ln2_b))))


class TransformerModel(MusicModel):
    causal = True
    description = (
        "Paper E's decoder-only Transformer over REMI events (Bar, Position, Pitch, Velocity, Duration; "
        "miditok). Shipped: 4 layers, 4 heads, d 192, FF 768, context 256 (CPU-trainable); the paper's "
        "large shape is reference_shape. Changes: RoPE positions so a sliding-window KV cache serves "
        "one token per step past the context (the paper re-runs the window); grammar-masked sampling "
        "so no bar is empty and takes reach the asked length."
    )
    reference_shape = {"n_layer": 12, "n_head": 8, "n_embd": 1024, "n_ff": 2048, "block_size": 512}

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        c = config
        if c.n_embd % c.n_head or (c.n_embd // c.n_head) % 2:
            raise ValueError(f"expected n_embd divisible by n_head into an even head size, got {c.n_embd}/{c.n_head}")
        if c.n_kv_head is not None and (c.n_kv_head < 1 or c.n_head % c.n_kv_head):
            raise ValueError(f"expected n_kv_head dividing n_head={c.n_head}, got {c.n_kv_head}")
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("c_proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.n_layer))
        self._rope: dict = {}  # (device, dtype) -> (cos, sin) tables; not a buffer, so .half() keeps fp32 math

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def _rope_at(self, start: int, T: int, like: torch.Tensor):
        """cos, sin (T, 1, hd/2) for positions start .. start+T-1 (computed in fp32, cast to ``like``)."""
        key = (like.device, like.dtype)
        cos, sin = self._rope.get(key, (None, None))
        if cos is None or cos.size(0) < start + T:
            hd = self.config.n_embd // self.config.n_head
            n = max(2 * (start + T), 4096)
            inv = self.config.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
            ang = torch.outer(torch.arange(n, dtype=torch.float64), inv)
            cos = ang.cos().to(like.device, like.dtype)[:, None]  # (n, 1, hd/2): over heads
            sin = ang.sin().to(like.device, like.dtype)[:, None]
            self._rope[key] = (cos, sin)
        return cos[start : start + T], sin[start : start + T]

    def _run(self, x: torch.Tensor, cache: KVCache | None = None, mask=None) -> torch.Tensor:
        h = self.drop(self.wte(x))  # (B, T, C)
        cos, sin = self._rope_at(0, x.size(1), h)
        for i, block in enumerate(self.blocks):
            h = block(h, cos, sin, cache, i, mask)
        return self.lm_head(self.ln_f(h))  # (B, T, V)

    @torch.no_grad()
    def sliding_logits(self, x: torch.Tensor) -> torch.Tensor:
        """What prefill + step compute on a stream x (B, T) of any length, in one pass:
        every token attends to itself and the block_size - 1 tokens before it, in every
        layer. (B, T, V); for tests and for scoring long streams."""
        i = torch.arange(x.size(1), device=x.device)
        band = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - self.config.block_size)
        return self._run(x, mask=band)

    def forward(self, x, targets=None):
        """x (B, T) ids, T <= block_size -> logits (B, T, V), loss (mean CE over non-PAD targets)."""
        if x.size(1) > self.config.block_size:
            raise ValueError(f"expected at most block_size={self.config.block_size} tokens, got {x.size(1)}")
        logits = self._run(x)
        return logits, self.loss(logits, targets)

    def new_cache(self, batch: int, like: torch.Tensor) -> KVCache:
        c = self.config
        shape = (c.n_layer, batch, c.n_kv_head or c.n_head, c.block_size, c.n_embd // c.n_head)
        weights = self._cold_weights() if self.step_bytes() > CACHE_BYTES else self._step_weights(batch, False)
        return KVCache(like.new_zeros(shape), like.new_zeros(shape), 0, weights)

    def _step_weights(self, batch: int, cold: bool) -> list:
        """Per block ``Block.step_weights``, then the embedding, final norm and head."""
        head = packed_linear(self.lm_head.weight, None, batch, cold, bf16=False)  # fp32 logits: no ties in the odds
        return [b.step_weights(batch, cold) for b in self.blocks] + [
            (self.wte.weight, self.ln_f.weight, self.ln_f.bias, head)
        ]

    def _cold_weights(self) -> list:
        """``_step_weights`` packed for any number of rows (faster at one, the same bits at each),
        made once per model and again only if a weight changed since (training, ``.to()``) or the
        fast paths were switched."""
        stamp = (fast.enabled(), *((p.data_ptr(), p._version) for p in self.parameters()))
        made = _COLD.get(self)
        if made is None or made[0] != stamp:
            _COLD[self] = made = (stamp, self._step_weights(4, True))
        return made[1]

    def step_bytes(self) -> int:
        """Bytes of weights a generation step reads: every linear's (the embedding gives one row)."""
        return sum(m.weight.numel() * m.weight.element_size() for m in self.modules() if isinstance(m, nn.Linear))

    def prefill(self, x, rows=None):
        """Read the prompt x (B, T) (its last block_size ids) -> (next logits (B, V), KVCache).
        With ``rows``: one prompt (1, T), its keys/values written into every row of a ``rows`` cache."""
        x = x[:, -self.config.block_size :]
        if rows is not None and x.size(0) != 1:
            raise ValueError(f"expected one prompt (1, T) to repeat for {rows} rows, got shape {tuple(x.shape)}")
        cache = self.new_cache(rows or x.size(0), self.wte.weight)
        logits = self._run(x, cache)  # causal over the prompt, keys/values into slots 0..T-1 (of every row)
        cache.pos = x.size(1)
        return repeat_rows(logits[:, -1], rows), cache

    def step(self, x_t, cache: KVCache):
        """One new id per row x_t (B,) -> (next logits (B, V), the same cache, one token longer)."""
        wte, ln_w, ln_b, head = cache.weights[-1]
        h = F.embedding(x_t, wte)  # (B, C)
        cos, sin = self._rope_at(cache.pos, 1, h)
        for i, block in enumerate(self.blocks):
            h = block.step(h, cos, sin, cache, i, cache.weights[i])
        cache.pos += 1
        return head(F.layer_norm(h, h.shape[-1:], ln_w, ln_b)), cache


ARCHS = {"transformer-remi": (TransformerModel, TransformerConfig)}
