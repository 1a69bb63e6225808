"""Train the chord model (editing/chordnet.py) on POP909: each song's MELODY track, read in its
own bars, against its annotated chords (``chord_midi.txt``), split as the flagship corpus splits
songs. ``python -m musiclab train-chords --data pop909=DIR --out weights/flagship`` (minutes on
a CPU) writes ``chords.safetensors`` beside the flagship and describes it in its card.

Targets: each half bar's annotated chord (sevenths, suspensions and all) as the triads that
share the most of its pitch classes, equally likely (C6 = C E G A: C and Am alike).
"""

from __future__ import annotations

import copy
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..codecs.barnote import Notes
from ..editing.chordnet import FILE, ChordNet, ChordNetConfig, card_entry, features, key_turn
from ..editing.triads import TONES, half_edges
from .cards import put_section

DEV_EVERY = 10  # every 10th training song picks the checkpoint instead of training


@dataclass
class ChordTrainConfig:
    steps: int = 2000
    check_every: int = 250  # steps between checks on the dev songs (the best check's weights are kept)
    batch_size: int = 32
    crop: int = 128  # half bars a training example holds at most (64 bars)
    lr: float = 3e-3
    weight_decay: float = 0.01
    seed: int = 0


@dataclass
class SongChords:
    path: str  # the corpus manifest's path
    group: str  # its near-duplicate group in the corpus (a song and its near-copies share one)
    notes: Notes  # the MELODY track (beats)
    bars: list[tuple[int, int]]  # the file's bars, [lo, hi) grid steps
    chords: np.ndarray  # (2 x bars, 12) bool: the annotated chord at each half bar's middle (none: no chord)
    x: np.ndarray  # (2 x bars, 25) features
    target: np.ndarray  # (2 x bars, 24): the triads nearest the annotated chord (rows of 0: no chord)


def dev_split(songs: list[SongChords]) -> tuple[list[SongChords], list[SongChords]]:
    """(dev, rest): about one song in DEV_EVERY, whole near-duplicate groups at a time, to pick
    the checkpoint on (none when there are fewer than DEV_EVERY songs: the last weights ship)."""
    if len(songs) < DEV_EVERY:
        return [], songs
    dev = [s for s in songs if zlib.crc32(s.group.encode()) % DEV_EVERY == 0]
    return dev, [s for s in songs if zlib.crc32(s.group.encode()) % DEV_EVERY]


def read_song(path: Path, manifest_path: str, group: str = "", positions_per_beat: int = 12) -> SongChords | None:
    """A POP909 song's melody, bars and chords; None without a MELODY track or chords."""
    from ..codecs.barnote import MELODY
    from ..codecs.barnote_state import notes_from_pm
    from ..editing.constrained import seconds_to_step, step_to_seconds
    from ..editing.harmony import bars_of
    from ..midi import pop909
    from ..midi.io import load_midi

    pm, move = pop909.aligned(load_midi(path), path)
    names = [i.name.upper() for i in pm.instruments]
    if "MELODY" not in names:
        return None
    only = copy.copy(pm)
    only.instruments = [pm.instruments[names.index("MELODY")]]
    notes = notes_from_pm(only, {0: MELODY})
    _, bars = bars_of(pm, 0, int(seconds_to_step(pm, pm.get_end_time(), positions_per_beat)) + 1, positions_per_beat)
    edges = half_edges(bars)
    middles = step_to_seconds(pm, (edges[:-1] + edges[1:]) / 2, positions_per_beat)
    spans = pop909.read_chords(path.with_name("chord_midi.txt"), move)
    chords = np.zeros((len(middles), 12), dtype=bool)
    for k, t in enumerate(middles):
        pcs = next((c for lo, hi, c in spans if lo <= t < hi), None)
        chords[k, list(pcs or ())] = True
    if not chords.any() or not len(notes.pitch):
        return None
    turn = key_turn(notes)
    overlap = np.roll(chords, -turn, axis=1).astype(float) @ TONES.T  # (n, 24) in the key-turned classes
    best = (overlap == overlap.max(1, keepdims=True)) & chords.any(1, keepdims=True)
    target = best / np.maximum(best.sum(1, keepdims=True), 1)
    x = features(notes, positions_per_beat, bars, turn)
    return SongChords(manifest_path, group or manifest_path, notes, bars, chords, x, target.astype(np.float32))


def read_songs(corp, root: str, log=print) -> dict[str, list[SongChords]]:
    """{"train": [...], "valid": [...]}: every POP909 song of the flagship corpus ``corp`` under
    ``root``, in its split; unreadable songs are skipped and counted."""
    from mir_eval.chord import InvalidChordException

    out, skipped = {"train": [], "valid": []}, 0
    for f in corp.files:
        if f["source"] != "pop909":
            continue
        try:
            song = read_song(Path(root, f["path"].split("/", 1)[1]), f["path"], f.get("group", ""))
        except (OSError, ValueError, IndexError, InvalidChordException) as e:
            skipped, song = skipped + 1, None
            log(f"  skipped {f['path']}: {e}")
        if song is not None:
            out[f["split"]].append(song)
    log(f"{len(out['train'])} training and {len(out['valid'])} validation songs; {skipped} skipped")
    return out


def _batch(songs: list[SongChords], c: ChordTrainConfig, rng: np.random.Generator):
    """(x (B, crop, 25), target (B, crop, 24)): a random crop of whole bars of random songs, zero-padded."""
    x = np.zeros((c.batch_size, c.crop, songs[0].x.shape[1]), np.float32)
    t = np.zeros((c.batch_size, c.crop, songs[0].target.shape[1]), np.float32)
    for b in range(c.batch_size):
        s = songs[rng.integers(len(songs))]
        a = 2 * rng.integers(max(1, (len(s.x) - c.crop) // 2 + 1))  # from a bar's first half
        n = len(s.x[a : a + c.crop])
        x[b, :n], t[b, :n] = s.x[a : a + n], s.target[a : a + n]
    return torch.from_numpy(x), torch.from_numpy(t)


def train(songs: list[SongChords], c: ChordTrainConfig, net_config: ChordNetConfig | None = None,
          dev: list[SongChords] | None = None, log=print) -> ChordNet:  # fmt: skip
    """A chord model trained for ``c.steps`` steps (cross-entropy against the nearest triads);
    with ``dev`` songs, the weights of the check (every ``c.check_every`` steps) where they scored best."""
    torch.manual_seed(c.seed)
    rng = np.random.default_rng(c.seed)
    net = ChordNet(net_config or ChordNetConfig())
    opt = torch.optim.AdamW(net.parameters(), c.lr, weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, c.lr, total_steps=c.steps, pct_start=0.05)
    best, t0 = (-1.0, None), time.perf_counter()
    for step in range(1, c.steps + 1):
        net.train()
        x, t = _batch(songs, c, rng)
        logp = torch.log_softmax(net(x), -1)
        has = t.sum(-1) > 0
        loss = -(t * logp).sum(-1)[has].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % c.check_every == 0 or step == c.steps:
            score = precision(net.eval(), dev) if dev else float(step)
            if score > best[0]:
                best = (score, copy.deepcopy(net.state_dict()))
            shown = f", dev precision {score:.3f}" if dev else ""
            log(f"  step {step}: loss {loss.item():.3f}{shown} ({time.perf_counter() - t0:.0f} s)")
    if best[1] is not None:  # else no check scored (NaN): the last weights
        net.load_state_dict(best[1])
    return net.eval()


def precision(net: ChordNet | None, songs: list[SongChords], positions_per_beat: int = 12) -> float:
    """Mean share of the named triad's pitch classes that are in the annotated chord, over the
    half bars that have one, as an accompaniment names them (editing/harmony.estimate_chords:
    the model ``net`` with the rules' evidence, or the rules alone for None)."""
    from ..editing.harmony import estimate_chords

    shares = []
    for s in songs:
        h = estimate_chords(s.notes, positions_per_beat, s.bars, net)
        named = h.tones[half_edges(s.bars)[:-1] - s.bars[0][0]]
        has = s.chords.any(1)
        shares.append(((named & s.chords).sum(1) / np.maximum(named.sum(1), 1))[has])
    return float(np.concatenate(shares).mean())


def ship(net: ChordNet, out: Path, facts: dict) -> dict:
    """Write ``chords.safetensors`` into weights folder ``out`` and its entry into config.json."""
    import json
    import os

    from safetensors.torch import save_model

    from ..serving.weights import file_sha256

    out = Path(out)
    tmp = out / f".{FILE}.{os.getpid()}.tmp"
    save_model(net, str(tmp))
    os.replace(tmp, out / FILE)
    card = json.loads((out / "config.json").read_text())
    card["chords"] = entry = card_entry(net, file_sha256(out / FILE), **facts)
    (out / "config.json").write_text(json.dumps(card, indent=1) + "\n")
    if (out / "README.md").exists():
        put_section(out, "chord model", readme_section(entry))
    return entry


def readme_section(e: dict) -> str:
    """The chord model's section of its weights folder's README.md, from its config.json entry ``e``."""
    return f"""## Chord model (`{FILE}`)

What an accompaniment follows when no chords are typed (musiclab/editing/chordnet.py): a
bidirectional GRU ({e["config"]["layers"]} layers, {e["config"]["hidden"]} wide, {e["params"]:,} parameters) that reads the
melody a half bar at a time, turned to C, and names each half bar's major or minor triad.

- Data: {e["data"]}. {e["songs"]["train"]} training songs; {e["songs"]["dev"]} more from the
  flagship's training side picked the checkpoint; {e["songs"]["valid"]} validation songs (the flagship's split).
- Training: {e["training"]["steps"]:,} steps of {e["training"]["batch_size"]} crops of up to
  {e["training"]["crop"] // 2} bars, {e["train_minutes"]} min on a CPU.
- Validation: {e["valid_precision"]:.3f} of the named triads' pitch classes are in the annotated chord
  (per half bar with one); the rules it replaces (editing/harmony.py): {e["valid_precision_rules"]:.3f}.

```
{e["command"]}
```"""


def run(corp, root: str, out: Path, c: ChordTrainConfig, log=print) -> dict:
    """Read POP909, train, measure on the validation songs, ship into ``out``: the card entry."""
    songs = read_songs(corp, root, log)
    if not songs["train"] or not songs["valid"]:
        raise ValueError(f"no POP909 songs with a MELODY track and chords under {root}")
    t0 = time.perf_counter()
    dev, rest = dev_split(songs["train"])
    net = train(rest, c, dev=dev, log=log)
    minutes = round((time.perf_counter() - t0) / 60, 1)
    mine, rules = precision(net, songs["valid"]), precision(None, songs["valid"])
    log(f"validation: triad tones in the annotated chord {mine:.3f} (the rules: {rules:.3f})")
    facts = {
        "data": "POP909 (Wang et al., ISMIR 2020; MIT): MELODY tracks and annotated chords",
        "songs": {"train": len(rest), "dev": len(dev), "valid": len(songs["valid"])},
        "training": asdict(c),
        "train_minutes": minutes,
        "valid_precision": round(mine, 3),
        "valid_precision_rules": round(rules, 3),
        "precision_how": "share of the named triad's pitch classes in the annotated chord, per half bar with a chord",
        "command": "python -m musiclab train-chords --data pop909=POP909_DIR --out weights/flagship",
    }
    return ship(net, out, facts)
