"""Argument types and the helpers every command shares: one-line user errors, finite numbers,
output paths, sampling options, data roots."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


class UserError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        raise UserError(message)


def finite(kind):
    def parse(v):
        try:
            x = kind(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {v!r}") from None
        if isinstance(x, float) and not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {v!r}")
        return x

    return parse


def _random_seed(v):
    x = finite(int)(v)
    if not 0 <= x < 2**32:
        raise argparse.ArgumentTypeError(f"expected 0 to {2**32 - 1}, got {v!r}")
    return x


def track_numbers(v: str) -> list[int] | None:
    """'1,3' -> [1, 3] (1-based track numbers); '' -> None (all non-drum tracks)."""
    if not v.strip():
        return None
    try:
        out = [int(t) for t in v.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated track numbers like 1,2, got {v!r}") from None
    if min(out) < 1:
        raise argparse.ArgumentTypeError(f"track numbers start at 1, got {v!r}")
    return out


def out_path(path: str, flag: str, suffixes: tuple[str, ...]) -> None:
    if not path.lower().endswith(suffixes):
        raise UserError(f"{flag} must end in {suffixes[0]}, got {path!r}")
    if not Path(path).resolve().parent.is_dir():
        raise UserError(f"{flag}: folder {str(Path(path).parent)!r} does not exist; create it first")


def add_sampling(s) -> None:
    s.add_argument("--temperature", type=finite(float), default=1.0)
    s.add_argument("--top-k", type=finite(int), default=0)
    s.add_argument("--top-p", type=finite(float), default=1.0)
    s.add_argument("--min-p", type=finite(float), default=0.0)
    s.add_argument("--repetition-penalty", type=finite(float), default=1.0)
    s.add_argument("--key-lock", action="store_true")
    s.add_argument("--variations", type=finite(int), default=1)
    s.add_argument("--random-seed", type=_random_seed, default=None)


def sampling(a) -> dict:
    keys = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "key_lock", "variations", "random_seed")
    return {k: getattr(a, k) for k in keys}


def data_roots(pairs: list[str] | None) -> dict[str, str]:
    """SOURCE=FOLDER pairs, or $MUSICLAB_DATA/{piano,asap,pop909} where those folders exist."""
    if pairs:
        try:
            return dict(kv.split("=", 1) for kv in pairs)
        except ValueError:
            raise UserError(f"--data takes SOURCE=FOLDER pairs (piano, asap, pop909), got {pairs}") from None
    from ..settings import current

    root = current().data
    roots = {s: f"{root}/{s}" for s in ("piano", "asap", "pop909") if root and Path(root, s).is_dir()}
    if not roots:
        raise UserError("no data: pass --data piano=DIR asap=DIR pop909=DIR (or set MUSICLAB_DATA to their parent)")
    return roots


def threads(model) -> int:
    from ..generation.sampling import engine_threads

    return engine_threads(model)  # the only generation in this process


def add_data(parser, sources: str = "{piano,asap,pop909}") -> None:
    """The --data SOURCE=FOLDER option (parsed by ``data_roots``)."""
    parser.add_argument("--data", nargs="+", metavar="SOURCE=FOLDER", help=f"default: $MUSICLAB_DATA/{sources}")
