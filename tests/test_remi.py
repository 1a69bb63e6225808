"""REMI tokenizer (miditok), its decoding grammar, and the KV-cached Transformer (paper E)."""

from __future__ import annotations

import copy

import numpy as np
import pretty_midi
import pytest
import torch

from musiclab.codecs import make_tokenizer
from musiclab.codecs.common import scale_pitch_classes
from musiclab.codecs.remi import BAR, DURATION, PITCH, POSITION, VELOCITY, RemiTokenizer
from musiclab.evaluation.bench import generate_naive
from musiclab.generation.sampling import generate
from musiclab.midi.io import seed_excerpt
from musiclab.models import build_model
from musiclab.serving.weights import load_model, save_weights
from tests.conftest import make_midi

TOK = RemiTokenizer()
TINY = {"block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32, "n_ff": 64, "dropout": 0.0}


@pytest.fixture(autouse=True)
def one_thread():
    # tiny tensors gain nothing from threads, and on a busy 2-core box OpenMP waits cost ms per op
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def two_track_midi(bpm: float = 100.0) -> pretty_midi.PrettyMIDI:
    """Melody + bass on a 16th grid, a chord, and two out-of-range pitches (folded by octaves)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    beat = 60.0 / bpm
    melody, bass = pretty_midi.Instrument(0), pretty_midi.Instrument(32)
    for i, p in enumerate([72, 74, 76, 77, 79, 81, 83, 84, 115]):
        melody.notes.append(pretty_midi.Note(70 + 5 * i, p, i * beat * 0.75, (i * 0.75 + 0.5) * beat))
    for i, p in enumerate([48, 43, 45, 41, 15]):
        bass.notes.append(pretty_midi.Note(60, p, i * 2 * beat, (i * 2 + 2) * beat))
    for p in (60, 64, 67):  # a chord on beat 9 (bar 3, beat 1)
        melody.notes.append(pretty_midi.Note(90, p, 8 * beat, 9 * beat))
    pm.instruments += [melody, bass]
    return pm


def notes_of(pm: pretty_midi.PrettyMIDI, bpm: float) -> list[tuple[float, int]]:
    """Sorted (onset in beats, pitch) over all tracks."""
    return sorted((round(n.start * bpm / 60.0, 3), n.pitch) for i in pm.instruments for n in i.notes)


def test_round_trip_keeps_pitches_and_grid_onsets():
    pm = two_track_midi()
    ids = TOK.encode(pm)
    assert ids.dtype == np.int64 and ids.ndim == 1 and ids.min() > 0 and ids.max() < TOK.vocab_size
    kinds = TOK.kind_of[ids]
    assert kinds[0] == BAR and set(kinds.tolist()) == {BAR, POSITION, PITCH, VELOCITY, DURATION}
    out = TOK.decode(ids, bpm=100.0)
    assert len(out.instruments) == 1  # both tracks merged into one stream
    got, want = notes_of(out, 100.0), notes_of(pm, 100.0)
    want = sorted((t, {115: 103, 15: 27}.get(p, p)) for t, p in want)  # folded into 21-108
    assert [p for _, p in got] == [p for _, p in want]
    assert np.abs(np.array([t for t, _ in got]) - [t for t, _ in want]).max() <= 0.125  # half a 16th
    # durations survive to the grid too
    durs = sorted(round((n.end - n.start) * 100 / 60, 2) for n in out.instruments[0].notes)
    assert min(durs) == pytest.approx(0.5) and max(durs) == pytest.approx(2.0)


def test_config_rebuilds_the_same_vocabulary():
    d = TOK.to_dict()
    assert d["kind"] == "remi" and TOK.vocab_size < 200
    again = make_tokenizer(d)
    assert isinstance(again, RemiTokenizer) and again.vocab_size == TOK.vocab_size
    assert np.array_equal(again.encode(two_track_midi()), TOK.encode(two_track_midi()))
    with pytest.raises(ValueError, match="expected a REMI tokenizer"):
        RemiTokenizer.from_dict({**d, "beat_res": 8})


def test_prompt_ends_at_the_seed_cut():
    pm = make_midi(seconds=12.0)  # 120 bpm eighth notes: a 16th step is 0.125 s, a bar 2 s
    ex = seed_excerpt(pm, 5.3)
    p = TOK.prompt(ex, 5.3)
    assert p.end_step == 43  # ceil(5.3 / 0.125): bar 2, position 11
    assert TOK.kind_of[p.ids].tolist().count(BAR) == 3  # bars 0, 1, 2
    st = TOK.new_state(1, p, 2.0)
    allowed = np.flatnonzero(st.mask()[0].numpy())
    # a new note cannot join the seed's last position: only later positions (bar 2 has seed notes: Bar too)
    assert set(TOK.kind_of[allowed]) == {POSITION, BAR}
    assert TOK.value_of[allowed[TOK.kind_of[allowed] == POSITION]].min() == 11


def run_random(seed: int, seconds: float, key_lock: bool, batch: int = 5, seed_seconds: float = 5.3):
    """Sample with random logits through the grammar until done; returns (state, excerpt)."""
    ex = seed_excerpt(make_midi(seconds=12.0), seed_seconds)
    st = TOK.new_state(batch, TOK.prompt(ex, seed_seconds), seconds, key_lock)
    rng = np.random.default_rng(seed)
    for _ in range(5000):
        if st.done.all():
            break
        logits = np.where(st.mask().numpy(), rng.normal(0, 3, (batch, TOK.vocab_size)), -np.inf)
        st.advance(np.argmax(logits + rng.gumbel(size=logits.shape), axis=1))  # a categorical draw
    return st, ex


@pytest.mark.parametrize("key_lock", [False, True], ids=["free", "key-lock"])
def test_grammar_random_logits_always_decode_to_the_asked_length(key_lock):
    bar_s, seed_s = 2.0, 5.3
    for trial in range(20):  # 20 x 5 takes per case
        seconds = [1.0, 3.0, 4.7, 8.0][trial % 4]
        st, ex = run_random(trial, seconds, key_lock)
        assert st.done.all()
        end = seed_s + seconds
        for b in range(len(st.done)):
            kinds = TOK.kind_of[st.ids[b]]
            # REMI order: Position -> Pitch -> Velocity -> Duration, notes rise within a position
            for k, nxt in zip(kinds[:-1], kinds[1:]):
                assert (k, nxt) in {
                    (BAR, POSITION), (POSITION, PITCH), (PITCH, VELOCITY), (VELOCITY, DURATION),
                    (DURATION, PITCH), (DURATION, POSITION), (DURATION, BAR),
                }  # fmt: skip
            ev = TOK.events([TOK.bar_id] * 3 + st.ids[b])  # (step, pitch, velocity, steps) from bar 0
            same = ev[1:, 0] == ev[:-1, 0]
            assert (ev[1:, 1][same] > ev[:-1, 1][same]).all()  # a chord's notes rise, no doubled pitch
            assert np.bincount(ev[:, 0].astype(int)).max() <= 10  # max_notes_per_position
            new = st.to_midi(b, ex).instruments[-1].notes
            starts = np.array([n.start for n in new])
            assert starts.min() >= seed_s - 1e-9 and max(n.end for n in new) <= end + 1e-9
            assert starts.max() >= end - bar_s  # the last bar before the end has notes
            # no empty bar between the seed and the end (bars of 4 beats from 0 s)
            seed_on = [n.start for n in ex.instruments[0].notes]
            onsets = np.concatenate([starts, seed_on])
            for bar in range(int(seed_s // bar_s), int(np.ceil(end / bar_s))):
                assert ((onsets >= bar * bar_s) & (onsets < (bar + 1) * bar_s)).any(), (trial, b, bar)
            if key_lock:
                assert {n.pitch % 12 for n in new} <= scale_pitch_classes(*st.prompt.key)


def new_notes(take) -> list[tuple]:
    """A take's continuation track's notes as (pitch, start, end, velocity)."""
    return [(n.pitch, n.start, n.end, n.velocity) for n in take.midi.instruments[-1].notes]


def tiny_model(**over):
    torch.manual_seed(0)
    return build_model("transformer-remi", {"vocab_size": TOK.vocab_size, **TINY, **over}).eval()


@torch.no_grad()
def test_kv_cache_matches_full_recomputation():
    m = tiny_model()
    x = torch.randint(1, TOK.vocab_size, (3, 32))
    full, _ = m(x)
    logits, cache = m.prefill(x[:, :7])
    got = [logits]
    for t in range(7, 31):
        logits, cache = m.step(x[:, t], cache)
        got.append(logits)
    assert torch.allclose(torch.stack(got, 1), full[:, 6:31], atol=1e-5)


def test_pooling_already_grouped_heads_again_is_the_mean_of_all():
    """4 -> 2 -> 1 key/value heads gives what 4 -> 1 gives: the source may itself be grouped."""
    from musiclab.training.pretrain import pool_kv_heads

    hd = TINY["n_embd"] // 4
    four, two, one = (tiny_model(n_head=4, n_kv_head=kv).state_dict() for kv in (4, 2, 1))
    via_two = pool_kv_heads(pool_kv_heads(four, two, hd), one, hd)
    direct = pool_kv_heads(four, one, hd)
    assert via_two.keys() == direct.keys() and all(torch.allclose(via_two[k], direct[k]) for k in direct)
    assert direct["blocks.0.c_attn.weight"].shape == one["blocks.0.c_attn.weight"].shape


@torch.no_grad()
@pytest.mark.parametrize("kv", [1, 2])
def test_grouped_query_attention_cache_matches_the_full_pass_and_its_pooled_start(kv):
    """With fewer key/value heads (grouped-query attention) the KV cache holds n_kv heads a layer,
    prefill + step give the full pass's logits, past the block too, and a model whose key/value heads
    are the mean of a full model's equals that model when its heads within a group were equal."""
    from musiclab.training.pretrain import pool_kv_heads

    m = tiny_model(n_head=4, n_kv_head=kv)
    x = torch.randint(1, TOK.vocab_size, (3, 99))
    logits, cache = m.prefill(x[:, :20])
    assert cache.k.shape[2] == kv
    got = [logits]
    for t in range(20, 99):
        logits, cache = m.step(x[:, t], cache)
        got.append(logits)
    assert torch.allclose(torch.stack(got, 1), m.sliding_logits(x)[:, 19:], atol=1e-5)
    full = tiny_model(n_head=4)
    state = full.state_dict()
    for name, w in state.items():  # make each group's key and value heads equal: pooling is then exact
        if name.endswith("c_attn.weight") or name.endswith("c_attn.bias"):
            C, hd = TINY["n_embd"], TINY["n_embd"] // 4
            k = w[C : 2 * C].unflatten(0, (kv, -1, hd))
            w[C : 2 * C] = k[:, :1].expand_as(k).flatten(0, 2)
            v = w[2 * C :].unflatten(0, (kv, -1, hd))
            w[2 * C :] = v[:, :1].expand_as(v).flatten(0, 2)
    full.load_state_dict(state)
    m.load_state_dict(pool_kv_heads(state, m.state_dict(), TINY["n_embd"] // 4))
    assert torch.allclose(m(x[:, :32])[0], full(x[:, :32])[0], atol=1e-5)


@torch.no_grad()
def test_sliding_window_cache_past_the_block():
    # one layer: a cached key depends only on its token and position, so with RoPE the sliding
    # cache must equal re-reading the last block_size tokens exactly (positions are relative)
    m = tiny_model(n_layer=1)
    x = torch.randint(1, TOK.vocab_size, (2, 100))
    logits, cache = m.prefill(x[:, :20])
    for t in range(20, 99):
        logits, cache = m.step(x[:, t], cache)
        assert len(cache) == min(t + 1, 32)
        window, _ = m(x[:, max(0, t + 1 - 32) : t + 1])
        assert torch.allclose(logits, window[:, -1], atol=1e-5), t
    # any depth: the ring buffer keeps each token's keys from when it was read, i.e. banded
    # causal attention (each token sees itself and the 31 before it, in every layer)
    m = tiny_model()
    logits, cache = m.prefill(x[:, :20])
    got = [logits]
    for t in range(20, 99):
        logits, cache = m.step(x[:, t], cache)
        got.append(logits)
    assert cache.k.shape[3] == 32 and len(cache) == 32
    assert torch.allclose(torch.stack(got, 1), m.sliding_logits(x[:, :99])[:, 19:], atol=1e-5)
    # ... which differs from re-reading only the last window once the take outgrows the block
    assert not torch.allclose(logits, m(x[:, 67:99])[0][:, -1], atol=1e-4)


def test_generate_with_a_saved_tiny_model(tmp_path):
    save_weights(tiny_model(), tmp_path / "tiny-remi", {"arch": "transformer-remi", "tokenizer": TOK.to_dict()})
    model = load_model("tiny-remi", root=tmp_path, device="cpu")
    seed = make_midi(seconds=12.0)
    kw = dict(seed_seconds=6.0, seconds=5.0, variations=3, random_seed=7, temperature=1.2, repetition_penalty=1.3)
    takes = generate(model, seed, **kw)
    assert len(takes) == 3
    for take in takes:
        new = take.midi.instruments[-1].notes
        assert min(n.start for n in new) >= 6.0 - 1e-9 and max(n.end for n in new) <= 11.0 + 1e-9
        assert max(n.start for n in new) >= 11.0 - 2.0 and not take.info["stopped_early"]
    again = generate(model, seed, **kw)
    assert [new_notes(a) for a in takes] == [new_notes(b) for b in again]
    other = generate(model, seed, **{**kw, "random_seed": 8})
    assert [new_notes(a) for a in takes] != [new_notes(b) for b in other]


def test_naive_window_rerun_gives_the_same_takes(tmp_path):
    # one layer: the sliding cache is exact, so the papers' full re-run must sample the same takes
    save_weights(tiny_model(n_layer=1), tmp_path / "one", {"arch": "transformer-remi", "tokenizer": TOK.to_dict()})
    model = load_model("one", root=tmp_path, device="cpu")
    kw = dict(seed_seconds=6.0, seconds=4.0, variations=2, random_seed=1)
    fast, slow = generate(model, make_midi(), **kw), generate_naive(model, make_midi(), **kw)
    assert fast[0].info["tokens"] > 32  # the take outgrew the window
    assert [new_notes(a) for a in fast] == [new_notes(b) for b in slow]


@torch.no_grad()
def test_save_load_round_trip(tmp_path):
    m = tiny_model()
    save_weights(m, tmp_path / "rt", {"arch": "transformer-remi", "tokenizer": TOK.to_dict()})
    loaded = load_model("rt", root=tmp_path, device="cpu")
    ref = copy.deepcopy(m).half().float()  # weights are stored in fp16
    x = torch.randint(1, TOK.vocab_size, (2, 32))
    assert torch.allclose(loaded.net(x)[0], ref(x)[0], atol=1e-5)
    assert loaded.card["model"]["n_layer"] == 2 and isinstance(loaded.codec, RemiTokenizer)


def test_reference_shape_builds_from_config():
    from musiclab.models.transformer import TransformerModel

    cfg = {"vocab_size": TOK.vocab_size, **TransformerModel.reference_shape}
    with torch.device("meta"):  # ~100M parameters: check the shape without allocating them
        m = build_model("transformer-remi", cfg)
    assert len(m.blocks) == 12 and m.blocks[0].mlp[0].out_features == 2048 and m.get_block_size() == 512
    with pytest.raises(ValueError, match="expected at most block_size"):
        tiny_model()(torch.ones(1, 33, dtype=torch.long))
