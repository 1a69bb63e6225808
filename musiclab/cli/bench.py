"""Benchmarks: bench generate (speed), bench quality (continuations of unseen pieces), bench
infill and bench accompany (the bar/note model's edits), bench nll (bits per note across tokenizations)."""

from __future__ import annotations

import json
import sys

from .args import Parser, UserError, add_data, data_roots, finite


def cmd_bench_generate(a):
    from ..evaluation.bench import bench_generate

    if a.seconds <= 0 or a.repeats < 1:
        raise UserError(f"bench needs --seconds > 0 and --repeats >= 1, got {a.seconds:g} and {a.repeats}")
    if a.threads is not None and a.threads < 1:
        raise UserError(f"--threads must be at least 1, got {a.threads}")
    import torch

    torch.set_num_threads(1)
    bench_generate(as_json=a.json, models=a.models, seconds=a.seconds, repeats=a.repeats, threads=a.threads)


def cmd_bench_quality(a):
    from ..evaluation import quality
    from ..serving.weights import list_models, load_model

    names = a.models or [m["name"] for m in list_models() if m["status"] == "ok"]
    try:
        models = [load_model(n) for n in names]
    except ValueError as e:
        raise UserError(str(e)) from None
    roots, corp = _validation_set(a)
    seeds = quality.pick_seeds(corp, roots, a.pieces, a.seconds)
    print(f"{len(seeds)} seeds from {len({s.path for s in seeds})} validation pieces; models: {', '.join(names)}",
          file=sys.stderr)  # fmt: skip
    rows = quality.run(models, seeds, a.seconds, a.takes, log=lambda m: print(m, file=sys.stderr))
    _print_table(a, rows, quality.METRICS)
    if a.cards:
        _quality_to_cards(a, rows, names, seeds)


def _quality_to_cards(a, rows: list[dict], names: list[str], seeds: list) -> None:
    from ..evaluation import quality
    from ..serving import weights
    from ..training.cards import write_quality

    how = (f"{len(seeds)} seeds (10 s, and 60 s where long enough) from {len({s.path for s in seeds})} validation "
           f"pieces of the flagship corpus (no model here trained on them), {a.seconds:g} s continuations, {a.takes} "
           "takes each, the app's default sampling for each model. Lower is better but for in-key, which should be "
           "near the real continuation's.")  # fmt: skip
    for name in names:
        mine = [r for r in rows if r["system"] in (name, "real", "seed loop", "another piece")]
        summary = quality.table(mine)
        write_quality(weights.WEIGHTS_DIR / name, name, summary, quality.markdown(summary), how)
        print(f"wrote the table into {name}'s card", file=sys.stderr)


def cmd_bench_edit(a):
    """bench infill / bench accompany: one bar/note model on held-out pieces (evaluation/editbench.py)."""
    from ..editing.constrained import check_model
    from ..evaluation import editbench, quality
    from ..serving.weights import load_model

    try:
        model = load_model(a.model)
        check_model(model, a.what)
    except ValueError as e:
        raise UserError(str(e)) from None
    roots, corp = _validation_set(a)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if a.what == "infill":
        spans = editbench.pick_spans(corp, roots, model.codec, a.pieces, a.bars)
        if not spans:
            raise UserError("no validation piece is long enough for a span (see --data, --pieces, --bars)")
        log(f"{len(spans)} spans of {a.bars} bars in validation pieces")
        rows = editbench.run_infill(model, spans, a.takes, log=log)
        keys = (*quality.METRICS, "bits_both", "bits_prefix")
        speed = editbench.speed_infill(model, spans, a.repeats) if a.repeats else None
        extra = {"infill_8_bars_s": speed}
    else:
        if "pop909" not in roots:
            raise UserError("bench accompany needs POP909: pass --data pop909=DIR (or set MUSICLAB_DATA)")
        songs = editbench.pick_songs(corp, roots["pop909"], a.pieces)
        if not songs:
            raise UserError("no validation POP909 song with MELODY and PIANO tracks and 30 s of melody was found")
        log(f"{len(songs)} validation POP909 songs, {editbench.ACCOMPANY_S:g} s each")
        rows = editbench.run_accompany(model, songs, a.takes, log=log)
        keys = ("chord_tone", "on_beat", "on_eighth", "notes_per_s", "above_melody")
        speed = editbench.speed_accompany(model, songs, a.repeats) if a.repeats else None
        extra = {"accompany_30_s": speed, "chord_tone_mass": editbench.melody_reliance(model, songs)}
    extra["targets"] = editbench.verdict(quality.table(rows, keys), model.name, a.what, speed)
    _print_table(a, rows, keys, extra)


def cmd_bench_nll(a):
    """Bits per note of each model on piano-midi.de's held-out pieces (the split every piano model
    and the flagship keep out), split by what the tokens say."""
    from pathlib import Path

    from ..evaluation.nll import bits_per_note
    from ..midi.io import MidiError, load_midi
    from ..serving.weights import load_model
    from ..training.dataset import split_of

    roots = data_roots(a.data)
    if "piano" not in roots:
        raise UserError("bench nll reads piano-midi.de's held-out pieces: pass --data piano=DIR (or MUSICLAB_DATA)")
    root = Path(roots["piano"])
    files = sorted(p for p in root.rglob("*.mid") if split_of(p.relative_to(root).as_posix()) == "valid")
    if not files:
        raise UserError(f"no held-out piano-midi.de pieces under {root}")
    try:
        models = [load_model(n) for n in a.models]
    except ValueError as e:
        raise UserError(str(e)) from None
    pieces, skipped = [], []
    for f in files[: a.pieces or None]:
        try:
            pieces.append(load_midi(f))
        except MidiError as e:
            skipped.append(f"{f.name}: {e}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s): {'; '.join(skipped)}", file=sys.stderr)
    rows = []
    for m in models:
        rows.append({"model": m.name, **bits_per_note(m, pieces)})
        print(f"  {m.name}: {rows[-1]['bits_per_note']:.3f} bits per note", file=sys.stderr)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    kinds = sorted({k for r in rows for k in r["by_kind"]})
    print("| model | bits per note | vs first | " + " | ".join(kinds) + " | notes | pieces |")
    print("|---|---:|---:|" + "---:|" * len(kinds) + "---:|---:|")
    for r in rows:
        rel = r["bits_per_note"] / rows[0]["bits_per_note"] - 1
        parts = " | ".join(f"{r['by_kind'].get(k, 0):.2f}" for k in kinds)
        print(
            f"| `{r['model']}` | {r['bits_per_note']:.3f} | {100 * rel:+.1f}% | {parts} | {r['notes']:,} | {r['pieces']} |"
        )


def _validation_set(a):
    """(data roots, the flagship corpus over them: its validation split is what no model saw)."""
    from ..training import corpus
    from ..training.dataset import CACHE_DIR

    roots = data_roots(a.data)
    try:
        return roots, corpus.build(roots, CACHE_DIR / "corpus", log=lambda *x: None)
    except ValueError as e:
        raise UserError(str(e)) from None


def _shown(v) -> str:
    """An extra figure of a bench table: a number, None, or {name: number}."""
    if isinstance(v, dict):
        return ", ".join(f"{name} {x:.3f}" for name, x in v.items())
    return str(v if v is None else round(v, 3))


def _print_table(a, rows: list[dict], keys, extra: dict | None = None) -> None:
    from ..evaluation import quality

    summary = quality.table(rows, keys)
    if a.json:
        print(json.dumps({"summary": summary, **(extra or {}), "rows": rows}, indent=1))
    else:
        print(quality.markdown(summary, keys))
        for k, v in (extra or {}).items():
            if k == "targets":
                continue
            print(f"{k}: {_shown(v)}")
        for target, (measured, met) in (extra or {}).get("targets", {}).items():
            print(f"target {target}: {measured} -> {'not measured' if met is None else 'met' if met else 'NOT met'}")


def add_parsers(sub) -> None:
    s = sub.add_parser("bench", help="benchmarks")
    bsub = s.add_subparsers(dest="what", required=True, parser_class=Parser)
    _add_generate(bsub)
    _add_quality(bsub)
    _add_edit(bsub)
    b = bsub.add_parser("nll", help="bits per note on piano-midi.de's held-out pieces, across tokenizations")
    add_data(b, "piano")
    b.add_argument("--models", nargs="+", default=["transformer-remi", "flagship"])
    b.add_argument("--pieces", type=finite(int), default=0, help="the first N held-out pieces (0: all of them)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=cmd_bench_nll)


def _add_generate(bsub) -> None:
    b = bsub.add_parser("generate", help="generation speed per model vs the naive window re-run")
    b.add_argument("--json", action="store_true")
    b.add_argument("--models", nargs="*")
    b.add_argument("--seconds", type=finite(float), default=30.0)
    b.add_argument("--repeats", type=finite(int), default=3)
    b.add_argument(
        "--threads",
        type=finite(int),
        default=None,
        help="torch intra-op threads per generation (default: as the app for one user, see engine_threads)",
    )
    b.set_defaults(fn=cmd_bench_generate)


def _add_quality(bsub) -> None:
    b = bsub.add_parser("quality", help="continuations of unseen pieces vs their real continuation, per source")
    add_data(b)
    b.add_argument("--models", nargs="*")
    b.add_argument("--pieces", type=finite(int), default=8, help="validation pieces per source")
    b.add_argument("--takes", type=finite(int), default=2)
    b.add_argument("--seconds", type=finite(float), default=30.0)
    b.add_argument("--json", action="store_true")
    b.add_argument("--cards", action="store_true", help="also write each model's rows into its card (weights/)")
    b.set_defaults(fn=cmd_bench_quality)


def _add_edit(bsub) -> None:
    for what, help_ in (("infill", "4-bar infills of unseen pieces vs the real bars, repeating, continuing only"),
                        ("accompany", "accompaniments of unseen POP909 melodies: chord tones, grid, vs real")):  # fmt: skip
        b = bsub.add_parser(what, help=help_)
        add_data(b)
        b.add_argument("--model", default="flagship")
        b.add_argument("--pieces", type=finite(int), default=8, help="validation pieces (songs) per source")
        b.add_argument("--takes", type=finite(int), default=2)
        if what == "infill":
            b.add_argument("--bars", type=finite(int), default=4, help="bars per span (4)")
        b.add_argument("--repeats", type=finite(int), default=3, help="timed single takes (0: no timing)")
        b.add_argument("--json", action="store_true")
        b.set_defaults(fn=cmd_bench_edit)
