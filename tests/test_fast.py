"""models/fast.py's off switch: the fast paths are the same maths, so MUSICLAB_FAST=0 gives the
very same takes, for one shipped model of each family (recurrent, window, Transformer, piano roll)."""

from __future__ import annotations

import pytest

from musiclab import generate, load_model
from musiclab.midi.examples import list_examples
from musiclab.midi.io import load_midi
from musiclab.models import fast

FAMILIES = ["lstm", "bigru", "transformer-remi", "pianoroll-lstm"]


def _notes(takes):
    return [[(n.pitch, round(n.start, 4), round(n.end, 4)) for n in t.midi.instruments[-1].notes] for t in takes]


@pytest.mark.parametrize("name", FAMILIES)
def test_takes_are_the_same_with_the_fast_paths_off(name, monkeypatch):
    model = load_model(name, device="cpu")
    seed = load_midi(list_examples()["Joplin — Maple Leaf Rag (piano)"])
    kw = dict(seed_seconds=6.0, seconds=4.0, variations=2, random_seed=21, top_p=0.95, threads=1)
    monkeypatch.setenv("MUSICLAB_FAST", "1")
    on = generate(model, seed, **kw)
    monkeypatch.setenv("MUSICLAB_FAST", "0")
    assert not fast.enabled()
    off = generate(model, seed, **kw)
    assert _notes(on) == _notes(off) and all(_notes(on))


def test_the_switch_turns_each_path_off(monkeypatch):
    import torch

    w = torch.randn(2048, 1024)
    on_onednn = lambda: "mkldnn" in fast.packed_linear(w, None, 4).__code__.co_names  # noqa: E731
    assert on_onednn() == fast._onednn_linear_ok()  # on: prepacked wherever oneDNN works
    monkeypatch.setenv("MUSICLAB_FAST", "0")
    assert not on_onednn()  # off: F.linear
    rnn = torch.nn.GRU(8, 8, batch_first=True, bidirectional=True).eval()
    with torch.inference_mode():
        x = torch.randn(2, 5, 8)
        assert torch.equal(fast.bidirectional(rnn, x), rnn(x)[0])  # the module's own call, bit for bit


@pytest.mark.skipif(not fast._onednn_linear_ok(), reason="oneDNN's packed linear is not usable in this torch build")
def test_a_cold_models_linears_give_each_row_the_same_bits_in_any_batch(monkeypatch):
    import torch

    from musiclab.models.transformer import CACHE_BYTES

    monkeypatch.setenv("MUSICLAB_FAST", "1")
    torch.manual_seed(0)
    w, b = torch.randn(1024, 256) / 16, torch.randn(1024)
    x = torch.randn(8, 256)
    lin = fast.packed_linear(w, b, 1, cold=True)
    assert "mkldnn" in lin.__code__.co_names  # packed though one row would take MKL's product otherwise
    assert all(torch.equal(lin(x[:1])[0], lin(x[:m])[0]) for m in range(2, 9))  # batch-mates change no bit
    bf16 = fast._onednn_bf16_ok()  # a CPU with bf16 arithmetic reads half the bytes
    assert lin(x).dtype == (torch.bfloat16 if bf16 else torch.float32)
    tol = dict(rtol=0.02, atol=0.05) if bf16 else dict(atol=1e-4)
    assert torch.allclose(lin(x).float(), torch.nn.functional.linear(x, w, b), **tol)
    packed = lambda net: "mkldnn" in net.new_cache(1, net.wte.weight).weights[0][4].__code__.co_names  # noqa: E731
    flagship, remi = load_model("flagship", device="cpu").net, load_model("transformer-remi", device="cpu").net
    assert flagship.step_bytes() > CACHE_BYTES > remi.step_bytes()
    assert packed(flagship) and not packed(remi)  # only the model whose weights the cache cannot hold


@pytest.mark.skipif(not fast._onednn_bf16_ok(), reason="this CPU has no bf16 arithmetic: the flagship steps in fp32")
def test_a_bf16_step_predicts_what_the_fp32_step_does(monkeypatch):
    """The flagship steps in bf16 where the CPU can: its next-token odds along a real piece stay
    within a thousandth of a nat (mean KL) of fp32's, and its likeliest token is nearly always the same."""
    import torch

    from musiclab.codecs.barnote_state import notes_from_pm

    model = load_model("flagship", device="cpu")
    codec, net = model.codec, model.net
    seed = load_midi(list_examples()["Joplin — Maple Leaf Rag (piano)"])
    ids = torch.tensor(codec.encode(codec.quantize(notes_from_pm(seed)), 0, 16)[:400])

    def odds():
        with torch.inference_mode():
            logits, cache = net.prefill(ids[None, :300], rows=2)
            out = [logits]
            for i in ids[300:]:
                logits, cache = net.step(i.repeat(2), cache)
                out.append(logits)
        return torch.log_softmax(torch.stack(out)[:, 0].float(), -1)  # (101, V)

    monkeypatch.setenv("MUSICLAB_FAST", "1")
    fast_odds = odds()
    monkeypatch.setenv("MUSICLAB_FAST", "0")
    plain = odds()
    kl = (plain.exp() * (plain - fast_odds)).sum(-1)
    assert float(kl.mean()) < 1e-3 and float(kl.max()) < 5e-3
    assert (plain.argmax(-1) == fast_odds.argmax(-1)).float().mean() >= 0.95
