"""Piano-roll models (paper E, Rao & Xie): multi-hot frames of 88 keys in, per-key logits out.

* ``pianoroll-lstm``: Linear(88 -> 128) -> LSTM 512 (1 layer, the paper's "simple" LSTM)
  -> Linear(512 -> 88), one sigmoid per key: the keys of the next frame are independent
  given the past. The paper's "complex" shape is ``reference_shape``.
* ``pianoroll-nade``: the same recurrent trunk, but the next frame's keys are predicted
  one after another, low to high, each conditioned on the RNN state and on the keys
  already chosen in that frame (RNN-NADE, Boulanger-Lewandowski et al. 2012, with a
  MADE-style masked layer instead of NADE's per-key hidden state):
  ``logit_k = b(h)_k + sum_{j<k} A_kj v_j + sum_u W2_ku relu(c(h)_u + sum_{j<m_u} W1_uj v_j) [m_u <= k]``
  where ``m_u`` (1..87) is the number of low keys hidden unit u may see.

Shapes: ``x`` (B, T, 88) float 0/1 frames; logits (B, T, 88) predict frame t + 1 from frames
<= t. For ``pianoroll-nade`` ``forward`` needs the targets (B, T, 88) to condition each key on
the lower keys of the true next frame (teacher forcing); the logits are then exact
conditionals, so the summed BCE is the exact NLL of the frame. Targets of -1 mark padding
and are ignored by the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..codecs.pianoroll import N_KEYS, candidates, draw_uniforms, key_probs
from .base import MusicModel, mlp_head, repeat_rows
from .lstm import lstm_step, step_state


@dataclass
class PianoRollLSTMConfig:
    n_keys: int = N_KEYS  # frame width (piano keys)
    block_size: int = 128  # training window in frames (4 steps/beat: 32 beats)
    n_embd: int = 128  # Linear(88 -> n_embd) frame embedding (paper: 128)
    hidden: int = 512  # LSTM units (paper simple: 512, complex: 1024)
    n_layer: int = 1  # LSTM layers (paper simple: 1, complex: 2)
    fc: list[int] = field(default_factory=list)  # dense layers before the output (paper complex: [512])
    dropout: float = 0.0  # on the embedding and on the LSTM output (paper complex: 0.3)
    fc_dropout: float = 0.0  # after each dense layer (paper complex: 0.5)
    layer_norm: bool = False  # LayerNorm on the LSTM output (paper complex: True)


@dataclass
class PianoRollNADEConfig(PianoRollLSTMConfig):
    made_hidden: int = 600  # hidden units of the masked autoregressive layer over keys (JSB: 600 beat 300)
    direct: bool = True  # a direct lower-triangular key -> key linear term as well


def _masked_bce(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
    """Mean BCE per key over real frames (targets -1 = padding)."""
    if targets is None:
        return None
    targets = targets.float()
    real = targets >= 0
    ll = F.binary_cross_entropy_with_logits(logits, targets.clamp(min=0), reduction="none")
    return (ll * real).sum() / real.sum().clamp(min=1)


class PianoRollLSTM(MusicModel):
    causal = True
    output = "multi-hot"
    half_on_gpu = False  # frames, key probabilities and NADE's key-by-key walk are fp32 throughout
    description = (
        "Paper E's piano-roll LSTM: each frame (88 keys, multi-hot) is embedded by a linear "
        "layer, an LSTM reads the frames, and one sigmoid per key predicts the next frame. "
        "Shipped: the paper's simple shape (embedding 128, LSTM 512, 1 layer). Keys are "
        "independent given the past; pianoroll-nade removes that assumption."
    )
    reference_shape = {  # paper E's "complex" LSTM
        "n_embd": 512,
        "hidden": 1024,
        "n_layer": 2,
        "fc": [512],
        "dropout": 0.3,
        "fc_dropout": 0.5,
        "layer_norm": True,
    }

    def __init__(self, config: PianoRollLSTMConfig):
        super().__init__(config)
        c = config
        if c.n_keys != N_KEYS:
            raise ValueError(f"n_keys: expected {N_KEYS} (the piano roll), got {c.n_keys}")
        self.embed = nn.Linear(c.n_keys, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.lstm = nn.LSTM(c.n_embd, c.hidden, c.n_layer, batch_first=True, dropout=c.dropout if c.n_layer > 1 else 0)
        self.norm = nn.LayerNorm(c.hidden) if c.layer_norm else nn.Identity()
        self._build_head()

    def _build_head(self) -> None:
        c = self.config
        self.head = mlp_head(c.hidden, c.fc, c.n_keys, c.fc_dropout)

    def loss(self, logits, targets):
        return _masked_bce(logits, targets)

    def trunk(self, x: torch.Tensor, state=None):
        """(B, T, 88) frames -> (B, T, hidden) conditioning vectors, LSTM state (h, c)."""
        if x.dim() != 3 or x.size(-1) != self.config.n_keys:
            raise ValueError(f"expected frames (B, T, {self.config.n_keys}), got {tuple(x.shape)}")
        h, state = self.lstm(self.drop(self.embed(x.float())), state)
        return self.drop(self.norm(h)), state

    def forward(self, x, targets=None):
        h, _ = self.trunk(x)
        logits = self.head(h)  # (B, T, 88)
        return logits, self.loss(logits, targets)

    def trunk_prefill(self, x: torch.Tensor, rows: int | None = None):
        """Prompt frames (B, T, 88) -> (conditioning after the last frame (B, hidden), state
        (h, c, gate kernels) for ``trunk_step``); with ``rows``, one prompt served to ``rows`` takes."""
        h, (h_n, c_n) = self.trunk(x)
        return repeat_rows(h[:, -1], rows), step_state(self.lstm, h_n, c_n, rows)

    def trunk_step(self, x_t: torch.Tensor, state):
        """One frame per row x_t (B, 88) -> (conditioning (B, hidden), state): ``trunk`` in eval
        mode for one frame, on the prepacked gate kernels (``lstm_step``)."""
        h, c, gates = state
        y, h, c = lstm_step(self.embed(x_t.float()), h, c, gates)
        return self.norm(y), (h, c, gates)

    def prefill(self, x, rows=None):
        h, state = self.trunk_prefill(x, rows)
        return self.head(h), state

    def step(self, x_t, state):
        h, state = self.trunk_step(x_t, state)
        return self.head(h), state

    @torch.no_grad()
    def predict_frames(self, h: torch.Tensor) -> torch.Tensor:
        """Most likely next frames (..., 88) from conditioning vectors (..., hidden): p > 0.5."""
        return (self.head(h) > 0).float()


class PianoRollNADE(PianoRollLSTM):
    description = (
        "RNN-NADE-style piano roll (Boulanger-Lewandowski et al. 2012): paper E's LSTM trunk "
        "(Linear 88 -> 128, LSTM), and an output that predicts the next frame's keys one after "
        "another, low to high, each conditioned on the LSTM state and on the keys already "
        "chosen in that frame (a MADE-style masked layer plus a direct lower-triangular term). "
        "The NLL is exact; sampling draws the 88 keys in order."
    )
    reference_shape = None  # not a paper-E model; RNN-NADE's own sizes are not reproduced

    def _build_head(self) -> None:
        c = self.config
        K, U = c.n_keys, c.made_hidden
        self.bias = nn.Linear(c.hidden, K)  # b(h): per-key logits from the RNN
        self.cond = nn.Linear(c.hidden, U)  # c(h): RNN-conditioned bias of the masked layer
        self.w1 = nn.Parameter(torch.randn(U, K) * K**-0.5)  # keys -> hidden units
        self.w2 = nn.Parameter(torch.randn(K, U) * U**-0.5)  # hidden units -> key logits
        self.direct = nn.Parameter(torch.zeros(K, K)) if c.direct else None
        deg = torch.arange(U) % (K - 1) + 1  # unit u sees keys j < deg[u] and feeds keys k >= deg[u]
        self.register_buffer("m1", (torch.arange(K)[None, :] < deg[:, None]).float(), persistent=False)
        self.register_buffer("m2", (deg[None, :] <= torch.arange(K)[:, None]).float(), persistent=False)
        self.register_buffer("tril", torch.ones(K, K).tril(-1), persistent=False)

    def frame_logits(self, h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Conditionals (..., 88): logit of key k given ``h`` (..., hidden) and keys j < k of ``v``."""
        v = v.float().clamp(min=0)
        a = F.relu(self.cond(h) + v @ (self.w1 * self.m1).t())  # (..., U)
        logits = self.bias(h) + a @ (self.w2 * self.m2).t()
        if self.direct is not None:
            logits = logits + v @ (self.direct * self.tril).t()
        return logits

    def forward(self, x, targets=None):
        if targets is None:
            raise ValueError("pianoroll-nade: forward expected the target frames (B, T, 88) to condition on, got None")
        h, _ = self.trunk(x)
        logits = self.frame_logits(h, targets)
        return logits, self.loss(logits, targets)

    # The incremental API carries (h_t, lstm state); its "logits" are the conditionals given
    # no lower keys on, used only for the mask's shape. Frames are drawn by sample_frame.
    def prefill(self, x, rows=None):
        h, state = self.trunk_prefill(x, rows)
        return self.frame_logits(h, torch.zeros(h.size(0), N_KEYS, device=h.device)), (h, state)

    def step(self, x_t, state):
        h, state = self.trunk_step(x_t, state[1])
        return self.frame_logits(h, torch.zeros(h.size(0), N_KEYS, device=h.device)), (h, state)

    def sample_frame(self, masked_logits, mstate, s, state, gens) -> torch.Tensor:
        """Draw one frame (B, 88) key by key, low to high, with the codec's settings.

        ``masked_logits`` (B, 88) carries the mask (-inf = key off); ``mstate`` comes from
        ``prefill``/``step``. With top_k / top_p / min_p on, a mean-field pass (each key fed
        its probability instead of a draw) estimates every key's chance of sounding, and the
        candidate keys are chosen from it as for pianoroll-lstm; then the candidates are
        drawn from their true conditionals. Each take draws 88 uniforms from its own generator.
        """
        if mstate is None:
            raise ValueError("pianoroll-nade: expected the model state from prefill/step (no naive mode), got None")
        h = mstate[0].float()
        held = state.held_beats().to(h.device)
        allowed = torch.isfinite(masked_logits)  # (B, 88)
        if s.top_k or s.top_p < 1 or s.min_p > 0:
            allowed &= candidates(self._walk_keys(h, s, held, allowed), s)
        return self._walk_keys(h, s, held, allowed, draw_uniforms(gens, h.device))

    def _walk_keys(self, h, s, held, allowed, u=None) -> torch.Tensor:
        """Keys low to high from (B, hidden): v_k = 1[u_k < p_k] (a draw), or p_k when ``u`` is None."""
        w1, w2 = self.w1 * self.m1, self.w2 * self.m2
        pre = self.cond(h)  # (B, U): masked-layer pre-activation, grows as keys are chosen
        base = self.bias(h)  # (B, 88)
        v = torch.zeros(h.size(0), N_KEYS, device=h.device)
        for k in range(N_KEYS):
            logit = base[:, k] + F.relu(pre) @ w2[k]
            if self.direct is not None:
                logit = logit + v[:, :k] @ self.direct[k, :k]
            p = key_probs(logit.masked_fill(~allowed[:, k], float("-inf")), s, None if held is None else held[:, k])
            v[:, k] = p if u is None else (u[:, k] < p).float()
            pre = pre + v[:, k : k + 1] * w1[:, k]
        return v

    @torch.no_grad()
    def predict_frames(self, h: torch.Tensor) -> torch.Tensor:
        """Greedy next frames (N, 88) from (N, hidden): key k on when p > 0.5 given keys < k."""
        from ..generation.sampling import Sampling

        allowed = torch.ones(h.size(0), N_KEYS, dtype=torch.bool, device=h.device)
        return self._walk_keys(h, Sampling(temperature=0), None, allowed)


ARCHS = {
    "pianoroll-lstm": (PianoRollLSTM, PianoRollLSTMConfig),
    "pianoroll-nade": (PianoRollNADE, PianoRollNADEConfig),
}
