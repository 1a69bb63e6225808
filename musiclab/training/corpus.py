"""The flagship's corpus: piano-midi.de + ASAP + POP909 as notes in beats, a manifest, a split by piece.

``build(sources)`` parses every MIDI file (symusic, worker processes, a time limit per file;
a broken file is skipped and counted), removes exact duplicates by content, groups
near-duplicates across files (the same piece in two collections, several performances of one
piece) so a group is wholly train or wholly valid, and writes one cache folder:
``notes.npz`` (every kept file's notes, concatenated, with offsets) + ``manifest.json``
(per file: source, licence, piece, kind, split, seconds, notes, tokens, or why skipped).

Split rule, per piece id within its source: ``sha256(piece)[:8] % 10 == 0`` -> valid (the rule piano-midi.de's
README suggests, so transformer-remi's held-out files stay held out); a near-duplicate group
is valid if any member is.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codecs.barnote import ACCOMP, MAIN, MELODY, BarNoteCodec, Notes, notes_from_score
from ..midi.pop909 import bar_shift
from .dataset import TimeLimit, time_limit

LICENCES = {
    "piano": "piano-midi.de (Bernd Krueger), CC BY-SA 3.0 DE",
    "asap": "ASAP (Foscarin et al., ISMIR 2020; performances mostly from MAESTRO), CC BY-NC-SA 4.0 (non-commercial)",
    "pop909": "POP909 (Wang et al., ISMIR 2020), MIT",
}
CORPUS_VERSION = 2  # bump when parsing changes, so caches are rebuilt
POP909_TRACKS = {"MELODY": MELODY, "BRIDGE": MAIN, "PIANO": ACCOMP}  # BRIDGE joins only merged streams


def split_of(piece: str) -> str:
    return "valid" if int(hashlib.sha256(piece.encode("utf-8")).hexdigest()[:8], 16) % 10 == 0 else "train"


def list_files(source: str, root: Path) -> list[tuple[str, str, str]]:
    """(relative path, piece id, kind) of every MIDI file of one source folder."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in (".mid", ".midi") or not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        if source == "asap":  # <Composer>/<Work>/<piece>/<file>: split by piece folder, never by file
            piece, kind = (
                p.parent.relative_to(root).as_posix(),
                "score" if p.name == "midi_score.mid" else "performance",
            )
        elif source == "pop909":
            piece, kind = p.parent.relative_to(root).as_posix(), "pop"
        else:
            piece, kind = rel, "score"
        out.append((rel, piece, kind))
    return out


def _parse(args):
    """Worker: (path, source, max seconds) -> (Notes or None, seconds of music, reason)."""
    path, source, limit = args
    import symusic

    try:
        with time_limit(limit):
            score = symusic.Score(path)
            tracks = None
            if source == "pop909":
                tracks = {i: POP909_TRACKS.get(t.name.upper(), MAIN) for i, t in enumerate(score.tracks)}
            notes = notes_from_score(score, tracks)
            if source == "pop909":
                notes.onset = notes.onset + bar_shift(Path(path).with_name("beat_midi.txt"), _first_qpm(score))
            seconds = float(score.to("second").end()) if len(notes) else 0.0
        return notes, seconds, None if len(notes) >= 16 else "fewer than 16 notes"
    except TimeLimit:
        return None, 0.0, f"parsing took over {limit:g} s"
    except Exception as e:  # a corrupt file is skipped and counted, whatever symusic raised
        return None, 0.0, f"unreadable: {type(e).__name__}: {e}"[:200]


def _first_qpm(score) -> float | None:
    return float(score.tempos[0].qpm) if len(score.tempos) else None


def content_hash(q: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(q[:, :2]).tobytes()).hexdigest()


def minhash(notes: Notes, n: int = 6, perms: int = 64) -> np.ndarray:
    """MinHash (perms,) of the set of n-grams of the top line's intervals (highest pitch per onset
    cluster), so transposed copies, scores and performances of one piece look alike."""
    order = np.argsort(notes.onset, kind="stable")
    on, p = notes.onset[order], notes.pitch[order]
    cluster = np.concatenate([[0], np.cumsum(np.diff(on) > 0.12)])
    top = np.full(cluster[-1] + 1 if len(cluster) else 0, -1)
    np.maximum.at(top, cluster, p)
    iv = np.clip(np.diff(top), -24, 24) + 24
    if len(iv) < n:
        return np.full(perms, np.iinfo(np.uint64).max, dtype=np.uint64)
    grams = np.lib.stride_tricks.sliding_window_view(iv, n) @ (49 ** np.arange(n))
    rng = np.random.default_rng(7)
    a = rng.integers(1, 2**61 - 1, perms, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**61 - 1, perms, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = np.unique(grams.astype(np.uint64))[:, None] * a[None] + b[None]
    return h.min(axis=0)


def near_duplicate_groups(sigs: np.ndarray, threshold: float = 0.4, bands: int = 16) -> np.ndarray:
    """Union-find group id (N,) over files whose MinHash similarity is >= ``threshold``."""
    parent = np.arange(len(sigs))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    rows = sigs.shape[1] // bands
    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        for i, s in enumerate(sigs[:, band * rows : (band + 1) * rows]):
            buckets.setdefault(s.tobytes(), []).append(i)
        for members in buckets.values():
            for j in members[1:]:
                if np.mean(sigs[members[0]] == sigs[j]) >= threshold:
                    parent[find(j)] = find(members[0])
    return np.array([find(i) for i in range(len(sigs))])


@dataclass
class FlagshipCorpus:
    """A built corpus: notes per kept file (memory of ~20 bytes a note) and its manifest."""

    files: list[dict]  # manifest rows of the kept files, in the order of ``notes``
    notes: list[Notes]
    skipped: list[dict]
    folder: Path

    def split(self, name: str) -> list[int]:
        return [i for i, f in enumerate(self.files) if f["split"] == name]


def build(sources: dict[str, str], cache_dir: Path, workers: int | None = None, limit: float = 30.0,
          log=print) -> FlagshipCorpus:  # fmt: skip
    """Parse, dedupe and split ``sources`` ({"piano"|"asap"|"pop909": folder}) into ``cache_dir``
    (reused when the file list, sizes and codec are the same)."""
    jobs, rows = [], []
    for source, root in sorted(sources.items()):
        if source not in LICENCES:
            raise ValueError(f"unknown corpus source {source!r}; known: {', '.join(LICENCES)}")
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"{source}: folder {root} does not exist")
        for rel, piece, kind in list_files(source, root):
            st = (root / rel).stat()
            rows.append({"source": source, "path": f"{source}/{rel}", "piece": f"{source}/{piece}", "kind": kind,
                         "licence": LICENCES[source], "bytes": st.st_size})  # fmt: skip
            jobs.append((str(root / rel), source, limit))
    key = hashlib.sha256(
        json.dumps([CORPUS_VERSION, rows, BarNoteCodec().to_dict()], sort_keys=True).encode()
    ).hexdigest()[:16]
    folder = Path(cache_dir) / f"corpus-{key}"
    if (folder / "manifest.json").exists():
        log(f"corpus cache hit: {folder}")
        return load(folder)
    log(f"parsing {len(jobs)} files with {workers or os.cpu_count()} workers ...")
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as ex:
        parsed = list(ex.map(_parse, jobs, chunksize=8))
    return _finish(rows, parsed, folder, log)


def _finish(rows, parsed, folder: Path, log) -> FlagshipCorpus:
    codec = BarNoteCodec()
    kept, notes, skipped, seen = [], [], [], {}
    for row, (n, seconds, why) in zip(rows, parsed):
        if n is None or why:
            skipped.append({**row, "skipped": why})
            continue
        q = codec.quantize(n)
        h = content_hash(q)
        if h in seen:
            skipped.append({**row, "skipped": f"duplicate of {seen[h]}"})
            continue
        seen[h] = row["path"]
        lo, hi = codec.bars_of(q)
        kept.append({**row, "seconds": round(seconds, 2), "notes": len(n), "tokens": int(len(codec.encode(q, lo, hi)))})
        notes.append(n)
    groups = near_duplicate_groups(np.stack([minhash(n) for n in notes])) if notes else np.zeros(0, int)
    valid_groups = {g for g, f in zip(groups, kept) if split_of(f["piece"].split("/", 1)[1]) == "valid"}
    for g, f in zip(groups, kept):
        f["group"] = kept[int(g)]["path"]
        f["split"] = "valid" if g in valid_groups else "train"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "notes.tmp.npz"
    all_notes = Notes.concat(notes)
    off = np.cumsum([0] + [len(n) for n in notes])
    np.savez(tmp, onset=all_notes.onset.astype(np.float32), duration=all_notes.duration.astype(np.float32),
             pitch=all_notes.pitch.astype(np.int8), velocity=all_notes.velocity.astype(np.int8),
             track=all_notes.track.astype(np.int8), offsets=off)  # fmt: skip
    tmp.rename(folder / "notes.npz")
    (folder / "manifest.json").write_text(json.dumps({"files": kept, "skipped": skipped}, indent=0))
    log(f"kept {len(kept)} files, skipped {len(skipped)}; {folder}")
    return FlagshipCorpus(kept, notes, skipped, folder)


def load(folder: Path) -> FlagshipCorpus:
    m = json.loads((Path(folder) / "manifest.json").read_text())
    z = np.load(Path(folder) / "notes.npz")
    cols = [z[k].astype(np.float64 if k in ("onset", "duration") else np.int64) for k in
            ("onset", "duration", "pitch", "velocity", "track")]  # fmt: skip
    off = z["offsets"]
    notes = [Notes(*(c[off[i] : off[i + 1]] for c in cols)) for i in range(len(off) - 1)]
    return FlagshipCorpus(m["files"], notes, m["skipped"], Path(folder))


def summary(corpus: FlagshipCorpus) -> list[dict]:
    """Per source and split: files, pieces, hours, notes, tokens (for the card and the README)."""
    out = {}
    for f in corpus.files:
        r = out.setdefault((f["source"], f["split"]), {"source": f["source"], "split": f["split"], "files": 0,
                                                       "pieces": set(), "hours": 0.0, "notes": 0, "tokens": 0})  # fmt: skip
        r["files"] += 1
        r["pieces"].add(f["piece"])
        r["hours"] += f["seconds"] / 3600
        r["notes"] += f["notes"]
        r["tokens"] += f["tokens"]
    rows = sorted(out.values(), key=lambda r: (r["source"], r["split"]))
    for r in rows:
        r["pieces"], r["hours"] = len(r["pieces"]), round(r["hours"], 2)
    return rows
