"""Shipped weights: ``weights/<name>/`` = model.safetensors + config.json (+ README.md card).

Weights load only through safetensors (never pickle). A missing or corrupt file marks that
one model "unavailable" with the reason; the others keep working.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_model as st_save_model

from ..codecs import Codec
from ..models import MusicModel, build_model
from ..settings import current


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A shipped model ready to generate: what :func:`load_model` returns. Cached and shared by
    every session, so read-only; compared by identity (one copy per folder and device)."""

    name: str  # its folder in weights/ (a registry name, safe in file names)
    card: dict  # the parsed config.json: arch, model and tokenizer config, data, metrics
    net: MusicModel  # the network, in eval mode on its device (prefill/step, models/base.py)
    codec: Codec  # music <-> ids for this net (codecs/__init__.py)
    folder: Path | None = None  # where its files are (weights/<name>), for what ships beside them

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, {type(self.net).__name__}, {type(self.codec).__name__}, {self.device})"


def _weights_dir() -> Path:
    """``MUSICLAB_WEIGHTS``, else the checkout's ``weights/``, else where ``pip install .`` put them."""
    if current().weights:
        return current().weights
    checkout = Path(__file__).resolve().parents[2] / "weights"
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "musiclab" / "weights"


WEIGHTS_DIR = _weights_dir()


def pick_device() -> torch.device:
    """CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def read_card(name: str, root: Path | None = None) -> dict:
    path = (root or WEIGHTS_DIR) / name / "config.json"
    try:
        card = json.loads(path.read_text())
        if not isinstance(card, dict):
            raise ValueError(f"model {name!r}: config.json holds a {type(card).__name__}, expected an object")
        return card
    except FileNotFoundError:
        raise ValueError(f"model {name!r} has no config.json in {path.parent}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"model {name!r}: config.json is not valid JSON ({e})") from None


def save_weights(model: MusicModel, out_dir: Path, card: dict, half: bool = True) -> None:
    """Write model.safetensors (fp16 when ``half``) and config.json (``card`` + model config)."""
    import dataclasses

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    to_save = model
    if half:
        import copy

        to_save = copy.deepcopy(model).to("cpu").half()
    # temp file + rename: a server reading weights/ meanwhile sees the old file or the new one, never half
    tmp = out_dir / f".model.safetensors.{os.getpid()}.tmp"
    st_save_model(to_save, str(tmp))
    os.replace(tmp, out_dir / "model.safetensors")
    card = dict(card)
    card["model"] = dataclasses.asdict(model.config)
    card["weights_sha256"] = file_sha256(out_dir / "model.safetensors")
    tmp = out_dir / f".config.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(card, indent=1) + "\n")
    os.replace(tmp, out_dir / "config.json")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file (read in 1 MB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def model_names(root: Path | None = None) -> list[str]:
    root = root or WEIGHTS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "config.json").exists())


_lock = threading.Lock()
_cache: dict[tuple[str, str], LoadedModel] = {}


def clear_cache() -> None:
    """Forget every loaded model, so the next load_model reads the files again (new weights, timings)."""
    with _lock:
        _cache.clear()


def load_model(name: str, root: Path | None = None, device: torch.device | str | None = None) -> LoadedModel:
    """Build ``name`` from its config.json and load its safetensors weights strictly.

    Returns a :class:`LoadedModel`: its ``net`` in eval mode on ``device`` (default:
    :func:`pick_device`), its ``codec`` and ``card``. Loaded models are cached and shared:
    callers must not modify them. Raises ValueError (unknown name, missing or corrupt files)
    with the reason.
    """
    root = Path(root or WEIGHTS_DIR)
    known = model_names(root)
    if name not in known:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(known) or '(none shipped)'}")
    dev = torch.device(device) if device is not None else pick_device()
    key = (str(root / name), str(dev))
    with _lock:
        if key in _cache:
            return _cache[key]
        card = read_card(name, root)
        from ..codecs import make_tokenizer

        try:
            model = build_model(card["arch"], card["model"])
            tokenizer = make_tokenizer(card["tokenizer"])
        except (KeyError, TypeError, ValueError) as e:
            what = f"no {e} entry" if isinstance(e, KeyError) else str(e)
            raise ValueError(
                f"model {name!r}: config.json does not describe a model musiclab can build ({what})"
            ) from None
        path = root / name / "model.safetensors"
        if not path.exists():
            raise ValueError(f"model {name!r}: weight file {path.name} is missing")
        try:
            st_load_model(model, str(path), strict=True)
        except (SafetensorError, RuntimeError, OSError, ValueError) as e:
            raise ValueError(f"model {name!r}: weight file is corrupt or does not match its config ({e})") from None
        bad = [k for k, p in model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
        if bad:  # garbage in the data part of the file: its header still parses
            raise ValueError(f"model {name!r}: weight file is corrupt: {bad[0]} holds NaN or inf values")
        want = card.get("weights_sha256")
        if want and file_sha256(path) != want:  # last: a flipped bit that leaves every value finite
            raise ValueError(
                f"model {name!r}: weight file is corrupt or replaced: its SHA-256 differs from config.json's"
            )
        model.to(dev).eval()
        if dev.type == "cuda" and model.half_on_gpu:
            model.half()
        _cache[key] = loaded = LoadedModel(name, card, model, tokenizer, root / name)
        return loaded


def list_models(root: Path | None = None) -> list[dict]:
    """One dict per shipped model: name, architecture, paper, params, status ("ok" or
    "unavailable"), error, data, metrics. A model is "ok" only if it really loads."""
    out = []
    for name in model_names(root):
        row = {"name": name, "architecture": None, "paper": None, "params": None, "status": "ok", "error": None}
        try:
            card = read_card(name, root)
            row.update(architecture=card.get("arch"), paper=card.get("paper"), data=card.get("data"))
            row["metrics"] = card.get("metrics", {})
            model = load_model(name, root, device="cpu")
            row["params"] = sum(p.numel() for p in model.net.parameters())
        except ValueError as e:
            row.update(status="unavailable", error=str(e))
        out.append(row)
    return out
