"""Training data: any folder of MIDI files -> token arrays, parsed in parallel, cached on disk.

* Each file is parsed in a worker process under a wall-clock limit (``max_parse_seconds``);
  slower or broken files are skipped and listed, never fatal.
* The split is deterministic by relative path: ``sha256(path)[:8] % 10 == 0`` -> valid
  (the rule of the piano corpus README), so reruns and other machines agree.
* Token arrays are cached in ``<cache>/<hash>/`` keyed by the file list, sizes, mtimes
  and tokenizer config: memory-mapped numpy shards (``write_shards``), so a rerun loads in a
  second and every DDP rank reads the same corpus without copying it into RAM.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..midi.io import MidiError, load_midi
from ..settings import current

CACHE_DIR = current().cache


def split_of(rel_path: str) -> str:
    sha = hashlib.sha256(rel_path.encode("utf-8")).hexdigest()
    return "valid" if int(sha[:8], 16) % 10 == 0 else "train"


class TimeLimit(Exception):
    """A file took longer than its parse budget."""


@contextmanager
def time_limit(seconds: float):
    """Raise TimeLimit in the main thread after ``seconds`` (SIGALRM: for worker processes)."""

    def alarm(signum, frame):
        raise TimeLimit()

    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _encode_one(args):
    path, tok_dict, max_seconds = args
    from ..codecs import make_tokenizer

    try:
        with time_limit(max_seconds):
            arr = np.asarray(make_tokenizer(tok_dict).encode(load_midi(path)))
        return path, arr, None
    except TimeLimit:
        return path, None, f"skipped: parsing took over {max_seconds:g} s"
    except (MidiError, ValueError, KeyError, IndexError) as e:
        return path, None, f"skipped: {e}"


@dataclass
class Corpus:
    train: list[np.ndarray]  # one token array per file: (T,) ids or (T, 88) frames
    valid: list[np.ndarray]
    skipped: list[tuple[str, str]]  # (relative path, reason)
    files: int
    split: str = "split by sha256 of the relative path"  # how train/valid were chosen (for the card)

    def n_tokens(self, split: str) -> int:
        return int(sum(len(a) for a in getattr(self, split)))


def midi_files(root: Path, max_files: int | None = None) -> list[Path]:
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in (".mid", ".midi") and p.is_file())
    return files[:max_files] if max_files else files


def build_corpus(
    root: str | os.PathLike,
    tok_dict: dict,
    max_files: int | None = None,
    max_parse_seconds: float = 20.0,
    workers: int | None = None,
    cache_dir: Path | None = None,
    log=print,
) -> Corpus:
    """Tokenize every MIDI file under ``root`` (recursively) and split train/valid."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist or is not a folder")
    if (root / "train.json").is_file() and (root / "valid.json").is_file():  # JSB Chorales piano rolls
        from ..codecs.pianoroll import with_start
        from ..evaluation.jsb import load_split

        train, valid = ([with_start(a) for a in load_split(root / f"{s}.json")] for s in ("train", "valid"))
        log(f"JSB format: {len(train)} train / {len(valid)} valid pieces from {root}")
        return Corpus(train, valid, [], len(train) + len(valid), "JSB Chorales split: train.json / valid.json")
    files = midi_files(root, max_files)
    if not files:
        raise ValueError(f"no .mid/.midi files under {root}")
    rel = [p.relative_to(root).as_posix() for p in files]
    key = hashlib.sha256(
        json.dumps([tok_dict, [(r, p.stat().st_size, int(p.stat().st_mtime)) for r, p in zip(rel, files)]]).encode()
    ).hexdigest()[:16]
    cache_root = cache_dir or CACHE_DIR
    cache, legacy = cache_root / key, cache_root / f"{key}.npz"
    if (cache / "meta.json").exists():
        arrays, skipped = read_shards(cache)
        log(f"token cache hit: {cache} ({len(arrays)} files, memory-mapped)")
    elif legacy.exists():  # caches written before the sharded format (one .npz, loaded into RAM)
        z = np.load(legacy, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        arrays = {r: z[f"a{i}"] for i, r in enumerate(meta["kept"])}
        skipped = [tuple(s) for s in meta["skipped"]]
        log(f"token cache hit: {legacy} ({len(arrays)} files)")
    else:
        jobs = [(str(p), tok_dict, max_parse_seconds) for p in files]
        skipped = write_shards(cache, jobs, rel, workers)
        arrays, _ = read_shards(cache)
        log(f"tokenized {len(arrays)} files, skipped {len(skipped)}; cached at {cache}")
    for r, why in skipped:
        log(f"  {r}: {why}")
    train = [a for r, a in arrays.items() if split_of(r) == "train"]
    valid = [a for r, a in arrays.items() if split_of(r) == "valid"]
    if not valid:  # tiny folders: hold out the last file so validation exists
        valid, train = train[-1:], train[:-1] or train[-1:]
    return Corpus(train, valid, skipped, len(files))


def write_shards(dest: Path, jobs: list[tuple], rel: list[str], workers: int | None = None) -> list[tuple[str, str]]:
    """Tokenize ``jobs`` (``_encode_one`` arguments) in parallel processes into a sharded cache.

    ``dest/`` gets ``shard-NNNNN.npy`` (all of a shard's files' tokens concatenated along
    axis 0: (N,) ids or (N, 88) frames) + ``shard-NNNNN.offsets.npy`` (int64, files + 1)
    + ``meta.json`` (relative paths per shard, skipped files). Only one shard (about
    ``MUSICLAB_SHARD_MB``, default 256 MB) is held in RAM; the folder is renamed into place
    when complete, so concurrent builders (several ranks or nodes) never see half a cache.
    Returns the skipped (relative path, reason) pairs."""
    limit = current().shard_mb * 2**20
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    shards, skipped, buf, names, size = [], [], [], [], [0]  # size: bytes in buf

    def flush():
        name = f"shard-{len(shards):05d}"
        np.save(tmp / f"{name}.npy", np.concatenate(buf))
        np.save(tmp / f"{name}.offsets.npy", np.cumsum([0] + [len(a) for a in buf], dtype=np.int64))
        shards.append({"name": name, "files": list(names)})
        buf.clear(), names.clear()
        size[0] = 0

    try:
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as ex:
            for (_path, arr, err), r in zip(ex.map(_encode_one, jobs, chunksize=4), rel):
                if err or arr is None or len(arr) < 2:
                    skipped.append((r, err or "skipped: too few tokens"))
                    continue
                if buf and (size[0] >= limit or arr.dtype != buf[0].dtype or arr.shape[1:] != buf[0].shape[1:]):
                    flush()
                buf.append(arr), names.append(r)
                size[0] += arr.nbytes
        if buf:
            flush()
        meta = {"format": "musiclab-shards-1", "shards": shards, "skipped": skipped}
        (tmp / "meta.json").write_text(json.dumps(meta))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        tmp.rename(dest)
    except OSError:  # another process finished the same cache first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return skipped


def read_shards(cache: Path) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """A sharded cache -> ({relative path: read-only memory-mapped token array}, skipped).
    Nothing is read into RAM until a window is cut from an array."""
    meta = json.loads((cache / "meta.json").read_text())
    arrays = {}
    for sh in meta["shards"]:
        flat = np.load(cache / f"{sh['name']}.npy", mmap_mode="r")
        off = np.load(cache / f"{sh['name']}.offsets.npy")
        for i, r in enumerate(sh["files"]):
            arrays[r] = flat[off[i] : off[i + 1]]
    return arrays, [tuple(s) for s in meta["skipped"]]


def sample_windows(arrays: list[np.ndarray], n: int, length: int, causal: bool, rng: np.random.Generator):
    """``n`` random windows: x (n, length[, 88]) and targets (n, length[, 88]) for causal
    models (x shifted by one) or (n, 1[, 88]) for window models (the token after x).
    Files shorter than the window are left-padded with 0 (PAD)."""
    file_idx, ends = window_positions([len(a) for a in arrays], n, rng)
    return windows_at(arrays, file_idx, ends, length, causal)


def window_positions(lens, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The random part of ``sample_windows``: ``n`` (file index, target position) pairs.

    Reads only the files' lengths (tokens or frames), so every DDP rank can draw the same
    global batch cheaply and materialise just its own slice (musiclab/training/distributed.py). Files
    are picked in proportion to their length; the target position is uniform in [1, len)."""
    lens = np.asarray(lens)
    file_idx = rng.choice(len(lens), size=n, p=lens / lens.sum())
    ends = np.array([int(rng.integers(1, lens[f])) for f in file_idx], dtype=np.int64)
    return file_idx, ends


def windows_at(arrays: list[np.ndarray], file_idx, ends, length: int, causal: bool):
    """The windows at the given (file index, target position) pairs; shapes as ``sample_windows``."""
    xs, ys = [], []
    for f, end in zip(file_idx, ends):
        a, end = arrays[f], int(end)
        if causal:
            start = max(0, min(end - 1, len(a) - length - 1))
            seg = a[start : start + length + 1]
            x, y = seg[:-1], seg[1:]
        else:
            x, y = a[max(0, end - length) : end], a[end : end + 1]
        if causal and a.ndim == 2:  # piano-roll frames: pad after the piece (a recurrent model
            xs.append(_pad_right(x, length))  # starts from the start frame), padded targets = -1
            ys.append(_pad_right(y.astype(np.int8), length, fill=-1))  # (a zero frame is a real rest)
            continue
        xs.append(_pad_left(x, length))
        ys.append(_pad_left(y, length if causal else 1))
    return np.stack(xs), np.stack(ys)


def eval_windows(arrays: list[np.ndarray], length: int, causal: bool, max_windows: int = 4000):
    """Deterministic held-out windows covering each file (causal: stride ``length``;
    window models: targets spread evenly). Every real token is a target at most once.
    Positions are counted from the lengths first and only the ``max_windows`` kept windows
    are cut, so a large memory-mapped valid split is never copied whole."""
    step = length if causal else max(1, length // 4)
    first = 0 if causal else 1  # causal: window starts; window models: target positions
    counts = np.array([len(range(first, len(a) - 1 if causal else len(a), step)) for a in arrays], dtype=np.int64)
    total = int(counts.sum())
    idx = np.linspace(0, total - 1, min(total, max_windows)).astype(int)
    ends = np.cumsum(counts)
    xs, ys = [], []
    for i in idx:
        f = int(np.searchsorted(ends, i, side="right"))  # file holding global window i
        a, pos = arrays[f], first + (int(i) - int(ends[f] - counts[f])) * step
        if causal:
            seg = a[pos : pos + length + 1]
            xs.append(_pad_right(seg[:-1], length))
            if a.ndim == 2:  # piano-roll frames: padded targets = -1 (ignored by the loss)
                ys.append(_pad_right(seg[1:].astype(np.int8), length, fill=-1))
            else:
                ys.append(_pad_right(seg[1:], length))
        else:
            xs.append(_pad_left(a[max(0, pos - length) : pos], length))
            ys.append(a[pos : pos + 1])
    return np.stack(xs), np.stack(ys)


def _pad_left(a: np.ndarray, n: int) -> np.ndarray:
    if len(a) >= n:
        return a[-n:]
    return np.concatenate([np.zeros((n - len(a),) + a.shape[1:], dtype=a.dtype), a])


def _pad_right(a: np.ndarray, n: int, fill: int = 0) -> np.ndarray:
    if len(a) >= n:
        return a[:n]
    return np.concatenate([a, np.full((n - len(a),) + a.shape[1:], fill, dtype=a.dtype)])
