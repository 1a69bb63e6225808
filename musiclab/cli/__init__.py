"""Command line: ``python -m musiclab {models,check,generate,infill,accompany,train,train-flagship,bench,evaluate} ...``.

Exit 0 on success; a user's mistake exits 2 with one line ``error: <what and why>`` on
stderr, never a traceback.

One module per concept, each with its commands (``cmd_*``) and their parsers (``add_parsers``):
``compose.py`` models, check, generate, infill, accompany, evaluate; ``train.py`` train,
train-flagship; ``bench.py`` the benchmarks; ``args.py`` the argument types and helpers they
share (``UserError``, finite numbers, output paths, sampling options, data roots). Commands
import what they run inside their function, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import sys

from . import bench, compose, train
from .args import Parser, UserError


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m musiclab", description="musiclab: neural MIDI continuation")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    compose.add_parsers(sub)
    train.add_parsers(sub)
    bench.add_parsers(sub)
    compose.add_evaluate_parser(sub)  # last in --help, where it has always been
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.fn(args)
        return 0
    except (UserError, ValueError, FileNotFoundError) as e:  # MidiError and SettingsError are ValueErrors
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
