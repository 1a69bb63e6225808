"""Every registered id-based architecture, built tiny: shapes, no look-ahead, learning,
save/load, incremental decoding == full recomputation, registry errors, shipped goldens."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from musiclab.codecs.noteshift import NoteTokenizer
from musiclab.models import ARCHS, arch_classes, build_model
from musiclab.models.base import PAD
from musiclab.serving.weights import load_model, model_names, read_card, save_weights

# Archs that read (B, T) ids; piano-roll models (multi-hot frames) have their own tests.
ID_ARCHS = sorted(a for a, (cls, _) in ARCHS.items() if cls.output != "multi-hot")
# Small values for the usual size fields (ints; lists of ints get this value per entry).
SHRINK = {"block_size": 12, "n_embd": 32, "hidden": 32, "n_layer": 2, "lstm": 32, "n_attn": 16, "dense": 32}
SHRINK |= {"n_head": 2, "d_model": 32, "d_ff": 64, "n_ff": 64}
B = 3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny models on a shared 2-core box: one thread avoids spin-waiting on a busy core
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_config(arch: str) -> dict:
    _, cfg_cls = arch_classes(arch)
    defaults, out = cfg_cls(), {}
    for f in dataclasses.fields(cfg_cls):
        default = getattr(defaults, f.name)
        if "dropout" in f.name and isinstance(default, float):
            out[f.name] = 0.0  # tiny layers plus dropout learn too slowly for the overfit test
        if f.name not in SHRINK:
            continue
        if isinstance(default, int) and not isinstance(default, bool):
            out[f.name] = SHRINK[f.name]
        elif isinstance(default, list) and all(isinstance(v, int) for v in default):
            out[f.name] = [SHRINK[f.name]] * len(default)
    return out


def tiny(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(arch, tiny_config(arch))


def ids(model, n: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, model.config.vocab_size, (n, length), generator=g)


@pytest.mark.parametrize("arch", ID_ARCHS)
def test_output_shapes_and_loss(arch):
    m = tiny(arch)
    T, V = m.get_block_size(), m.config.vocab_size
    x = ids(m, B, T)
    y = ids(m, B, T if m.causal else 1, seed=2)
    logits, loss = m(x, y)
    assert logits.shape == ((B, T, V) if m.causal else (B, 1, V))
    assert loss.shape == () and torch.isfinite(loss)
    assert m(x)[1] is None


@pytest.mark.parametrize("arch", ID_ARCHS)
def test_no_look_ahead_and_whole_context_read(arch):
    m = tiny(arch).eval()
    T = m.get_block_size()
    x = ids(m, 2, T)
    with torch.no_grad():
        base = m(x)[0]
        if m.causal:
            # changing the last token must not change any earlier prediction
            x2 = x.clone()
            x2[:, -1] = x2[:, -1] % (m.config.vocab_size - 1) + 1
            out = m(x2)[0]
            torch.testing.assert_close(out[:, :-1], base[:, :-1])
            assert not torch.allclose(out[:, -1], base[:, -1])
        else:
            # the oldest token of the window matters; a token older than the window does not
            x2 = x.clone()
            x2[:, 0] = x2[:, 0] % (m.config.vocab_size - 1) + 1
            assert not torch.allclose(m(x2)[0], base)
            longer = torch.cat([ids(m, 2, 5, seed=9), x], dim=1)
            torch.testing.assert_close(m(longer)[0], base)


@pytest.mark.parametrize("arch", [a for a in ID_ARCHS if not ARCHS[a][0].causal])
def test_window_shorter_than_block_is_left_padded(arch):
    m = tiny(arch).eval()
    short = ids(m, 2, 5)
    padded = torch.cat([torch.full((2, m.get_block_size() - 5), PAD), short], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(m(short)[0], m(padded)[0])


@pytest.mark.parametrize("arch", ID_ARCHS)
def test_tiny_batch_overfits(arch):
    m = tiny(arch)
    T = m.get_block_size()
    x, y = ids(m, 4, T), ids(m, 4, T if m.causal else 1, seed=2)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    m.eval()
    with torch.no_grad():
        first = m(x, y)[1].item()
    m.train()
    for _ in range(50):
        opt.zero_grad()
        m(x, y)[1].backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        last = m(x, y)[1].item()
    assert last < 0.5 * first, f"{arch}: loss {first:.3f} -> {last:.3f} after 50 steps"


@pytest.mark.parametrize("arch", ID_ARCHS)
def test_save_load_round_trip(arch, tmp_path):
    m = tiny(arch)
    # a few training steps so BatchNorm statistics and weights are not at their defaults
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for s in range(3):
        x = ids(m, 4, m.get_block_size(), seed=s)
        opt.zero_grad()
        m(x, x if m.causal else x[:, -1:])[1].backward()
        opt.step()
    m.eval()
    with torch.no_grad():  # weights are stored in fp16: compare against the rounded model
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    save_weights(m, tmp_path / "tiny", {"arch": arch, "tokenizer": NoteTokenizer().to_dict()})
    loaded = load_model("tiny", tmp_path, device="cpu").net
    assert type(loaded) is type(m) and loaded.config == m.config and not loaded.training
    assert read_card("tiny", tmp_path)["model"] == dataclasses.asdict(m.config)
    x = ids(m, B, m.get_block_size(), seed=7)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], m(x)[0])


@pytest.mark.parametrize("arch", ID_ARCHS)
@pytest.mark.parametrize("prompt_len", [4, 12])
def test_incremental_equals_full_recomputation(arch, prompt_len):
    m = tiny(arch).eval()
    T = m.get_block_size()
    # causal models carry all history, so compare within the block; window models slide past it
    n_steps = T - prompt_len if m.causal else 2 * T
    history = ids(m, 2, prompt_len)
    new = ids(m, 2, max(n_steps, 1), seed=3)
    with torch.inference_mode():
        logits, state = m.prefill(history)
        torch.testing.assert_close(logits, m.naive_step(history), atol=1e-5, rtol=1e-4)
        for t in range(n_steps):
            history = torch.cat([history, new[:, t : t + 1]], dim=1)
            logits, state = m.step(new[:, t], state)
            assert logits.shape == (2, m.config.vocab_size)
            torch.testing.assert_close(logits, m.naive_step(history), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("call", [build_model, arch_classes])
def test_unknown_arch_lists_known_names(call):
    with pytest.raises(ValueError, match="nope") as e:
        call("nope")
    for name in ARCHS:
        assert name in str(e.value)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_unknown_config_key(arch):
    with pytest.raises(ValueError, match="wings"):
        build_model(arch, {"wings": 2})


@pytest.mark.parametrize("arch", [a for a in ID_ARCHS if getattr(ARCHS[a][0], "reference_shape", None)])
def test_paper_shape_builds_and_runs(arch):
    cls = ARCHS[arch][0]
    assert "no look-ahead" in cls.description or cls.causal
    with torch.device("meta"):  # the paper's shapes can be big: build without allocating
        m = build_model(arch, cls.reference_shape)
    if sum(p.numel() for p in m.parameters()) > 5_000_000:
        return
    m = build_model(arch, cls.reference_shape).eval()
    x = ids(m, 1, m.get_block_size())
    with torch.no_grad():
        assert m(x)[0].shape[-1] == m.config.vocab_size


SHIPPED = [n for n in model_names() if read_card(n).get("golden", {}).get("greedy")]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_replay_their_golden_decode(name):
    loaded = load_model(name, device="cpu")
    golden, m = loaded.card["golden"], loaded.net
    with torch.inference_mode():
        logits, state = m.prefill(torch.tensor([golden["prompt"]]))
        out = []
        for _ in golden["greedy"]:
            nxt = logits.float().argmax(-1)
            out.append(int(nxt))
            logits, state = m.step(nxt, state)
    assert out == golden["greedy"]


@pytest.mark.parametrize("batch", [1, 4])
def test_packed_linear_equals_f_linear(batch):
    """The generation steps' linear (oneDNN-prepacked on CPU for big weights) is the same maths."""
    import torch.nn.functional as F

    from musiclab.models.fast import packed_linear

    g = torch.Generator().manual_seed(0)
    for out_f, in_f in ((2048, 1024), (64, 32)):  # one prepacked, one left to F.linear
        w, b = torch.randn(out_f, in_f, generator=g), torch.randn(out_f, generator=g)
        x = torch.randn(batch, in_f, generator=g)
        torch.testing.assert_close(packed_linear(w, b, batch)(x), F.linear(x, w, b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", [torch.nn.GRU, torch.nn.LSTM])
@pytest.mark.parametrize("batch", [1, 3])
def test_concurrent_directions_equal_the_module(kind, batch):
    """Window re-reads run a bidirectional layer's two directions at once (one on the inter-op
    pool): same outputs as the nn module, in every position, for both directions."""
    from musiclab.models.fast import bidirectional

    torch.manual_seed(0)
    rnn = kind(16, 24, batch_first=True, bidirectional=True).eval()
    x = torch.randn(batch, 10, 16)
    with torch.no_grad():
        ref = rnn(x)[0]
    with torch.inference_mode():
        got = bidirectional(rnn, x)
    assert got.shape == (batch, 10, 48)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    with torch.enable_grad():  # training keeps the module path (autograd)
        assert bidirectional(rnn, x.requires_grad_()).requires_grad


@pytest.mark.parametrize("arch", [a for a in ID_ARCHS if not ARCHS[a][0].causal])
def test_window_models_same_logits_with_or_without_autograd(arch):
    m = tiny(arch).eval()
    x = ids(m, B, m.get_block_size(), seed=5)
    ref = m(x)[0].detach()  # autograd on: the nn modules' own path
    with torch.inference_mode():
        torch.testing.assert_close(m(x)[0], ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ID_ARCHS)
def test_prompt_read_once_serves_every_row(arch):
    """prefill(x, rows=3) on one prompt == prefill on 3 copies of it, and the rows then step
    apart independently (no row shares memory with another)."""
    m = tiny(arch).eval()
    x, nxt = ids(m, 1, 8), ids(m, 3, 2, seed=4)
    with torch.inference_mode():
        ref, ref_state = m.prefill(x.repeat(3, 1))
        got, state = m.prefill(x, rows=3)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
        for t in range(2):
            (got, state), (ref, ref_state) = m.step(nxt[:, t], state), m.step(nxt[:, t], ref_state)
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got[0], got[1])  # the rows did step apart


def test_loaded_models_are_shared_until_the_cache_is_cleared():
    from musiclab.serving.weights import clear_cache

    first = load_model("lstm", device="cpu")
    assert load_model("lstm", device="cpu") is first  # one copy per process, shared by every session
    clear_cache()
    again = load_model("lstm", device="cpu")
    assert again is not first and again.card == first.card
