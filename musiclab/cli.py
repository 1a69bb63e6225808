"""Command line: ``python -m musiclab {models,check,generate,train,bench,evaluate} ...``.

Exit 0 on success; a user's mistake exits 2 with one line ``error: <what and why>`` on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


class UserError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        raise UserError(message)


def _finite(kind):
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
    x = _finite(int)(v)
    if not 0 <= x < 2**32:
        raise argparse.ArgumentTypeError(f"expected 0 to {2**32 - 1}, got {v!r}")
    return x


def _tracks(v: str) -> list[int] | None:
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


def _out_path(path: str, flag: str, suffixes: tuple[str, ...]) -> None:
    if not path.lower().endswith(suffixes):
        raise UserError(f"{flag} must end in {suffixes[0]}, got {path!r}")
    if not Path(path).resolve().parent.is_dir():
        raise UserError(f"{flag}: folder {str(Path(path).parent)!r} does not exist; create it first")


def cmd_models(a):
    from . import list_models

    rows = list_models()
    if a.json:
        print(json.dumps(rows, indent=1, default=str))
        return
    if a.markdown:  # the README's model table
        from .serving.weights import read_card
        from .training.cards import data_name

        print("| model | paper | params | data | valid NLL | baseline NLL | vs baseline | accuracy | epochs |")
        print("|---|---|---:|---|---:|---:|---:|---:|---:|")
        for r in rows:
            if r["status"] != "ok":
                print(f"| {r['name']} | unavailable: {r['error']} | | | | | | | |")
                continue
            c, m = read_card(r["name"]), r.get("metrics") or {}
            gain = m.get("nll_vs_baseline")
            data = data_name(c)
            print(
                f"| `{r['name']}` | {str(c.get('paper', ''))[:1]} | {r['params']:,} | {data} | {m.get('valid_nll')} | "
                f"{m.get('baseline_nll')} ({m.get('baseline')}) | {'' if gain is None else f'{100 * gain:.0f}%'} | "
                f"{m.get('valid_accuracy')} | {c.get('epochs')} |"
            )
        return
    for r in rows:
        m = r.get("metrics") or {}
        extra = f"valid NLL {m.get('valid_nll')} (baseline {m.get('baseline_nll')})" if m else ""
        if r["status"] != "ok":
            extra = f"UNAVAILABLE: {r['error']}"
        print(f"{r['name']:<22} {r['architecture'] or '?':<18} {r['params'] or 0:>10,} params  {extra}")


def cmd_check(a):
    from .midi.io import load_midi, midi_summary

    print(json.dumps(midi_summary(load_midi(a.file)), indent=1))


def cmd_generate(a):
    from . import generate, load_midi, load_model
    from .generation.sampling import engine_threads

    _out_path(a.out, "--out", (".mid", ".midi"))
    if a.wav:
        _out_path(a.wav, "--wav", (".wav",))
    from .generation.threads import serving_threads

    serving_threads()  # generate() raises it for its own call
    seed = load_midi(a.seed)
    model = load_model(a.model)
    if a.tracks and max(a.tracks) > len(seed.instruments):
        raise UserError(f"--tracks {max(a.tracks)} does not exist; the seed has tracks 1..{len(seed.instruments)}")
    tracks = [t - 1 for t in a.tracks] if a.tracks else None
    takes = generate(
        model,
        seed,
        seed_seconds=a.seed_seconds,
        seconds=a.seconds,
        tracks=tracks,
        threads=engine_threads(model),  # the only generation in this process
        **_sampling(a),
    )
    _write_takes(takes, a.out, a.wav)


def _write_takes(takes, out: str, wav: str | None) -> None:
    """OUT.mid (one take) or OUT-1.mid ... OUT-V.mid, and the same for --wav."""
    from .midi.io import midi_to_bytes

    def paths(p: str, ext: str) -> list[Path]:
        if len(takes) == 1:
            return [Path(p)]
        return [Path(p).with_name(f"{Path(p).stem}-{i + 1}{ext}") for i in range(len(takes))]

    for take, path in zip(takes, paths(out, ".mid")):
        path.write_bytes(midi_to_bytes(take.midi))
        print(f"wrote {path} ({take.midi.get_end_time():.1f} s, random seed {take.info['random_seed']})")
    if wav:
        import soundfile as sf

        from . import render_audio

        for take, path in zip(takes, paths(wav, ".wav")):
            audio, sr = render_audio(take)
            sf.write(str(path), audio, sr)
            print(f"wrote {path}")


def _sampling(a) -> dict:
    keys = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "key_lock", "variations", "random_seed")
    return {k: getattr(a, k) for k in keys}


def cmd_infill(a):
    from .editing.infill import infill

    model, pm = _job_inputs(a)
    tracks = _check_tracks(a.tracks, pm)
    _write_takes(
        infill(model, pm, a.start, a.end, tracks=tracks, threads=_threads(model), **_sampling(a)), a.out, a.wav
    )


def cmd_accompany(a):
    from .editing.accompany import accompany

    model, pm = _job_inputs(a)
    if not 1 <= a.melody_track <= len(pm.instruments):
        raise UserError(f"--melody-track {a.melody_track} does not exist; the file has tracks 1..{len(pm.instruments)}")
    takes = accompany(model, pm, a.melody_track - 1, start=a.start, end=a.end, threads=_threads(model), **_sampling(a))
    _write_takes(takes, a.out, a.wav)


def _job_inputs(a):
    from . import load_midi, load_model

    _out_path(a.out, "--out", (".mid", ".midi"))
    if a.wav:
        _out_path(a.wav, "--wav", (".wav",))
    return load_model(a.model), load_midi(a.input)


def _check_tracks(tracks: list[int] | None, pm) -> list[int] | None:
    if tracks and (max(tracks) > len(pm.instruments) or min(tracks) < 1):
        raise UserError(f"--tracks {tracks} is not accepted; the file has tracks 1..{len(pm.instruments)}")
    return [t - 1 for t in tracks] if tracks else None


def _threads(model) -> int:
    from .generation.sampling import engine_threads

    return engine_threads(model)  # the only generation in this process


def cmd_train(a):
    from .training.train import TrainConfig, train

    cfg = {}
    if a.config:
        try:
            cfg = json.loads(Path(a.config).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read --config {a.config}: {e}") from None
    cfg.update(arch=a.arch, data=a.data, out=a.out)
    for k in (
        "epochs",
        "steps_per_epoch",
        "batch_size",
        "lr",
        "optimizer",
        "patience",
        "max_files",
        "max_parse_seconds",
        "time_budget_minutes",
        "seed",
    ):
        if getattr(a, k) is not None:
            cfg[k] = getattr(a, k)
    for kv in a.set or []:
        k, _, v = kv.partition("=")
        try:
            cfg.setdefault("model", {})[k] = json.loads(v)
        except json.JSONDecodeError:
            raise UserError(f"--set {kv!r}: value must be JSON (e.g. hidden=256)") from None
    try:
        tc = TrainConfig(**cfg)
    except TypeError as e:
        raise UserError(f"bad training config: {e}") from None
    train(tc, resume=a.resume)
    from .training.distributed import exit_worker

    exit_worker()  # under torchrun: skip interpreter teardown (gloo can abort there)


def cmd_train_flagship(a):
    from .training.pretrain import PretrainConfig, train

    try:
        cfg = json.loads(Path(a.config).read_text()) if a.config else {}
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read --config {a.config}: {e}") from None
    cfg.update(run=a.run, out=a.out, data=_data_roots(a.data))
    if a.max_minutes is not None:
        cfg["max_minutes"] = a.max_minutes
    try:
        pc = PretrainConfig(**cfg)
    except TypeError as e:
        raise UserError(f"bad flagship training config: {e}") from None
    try:
        train(pc)
    except ValueError as e:
        raise UserError(str(e)) from None


def _data_roots(pairs: list[str] | None) -> dict[str, str]:
    """SOURCE=FOLDER pairs, or $MUSICLAB_DATA/{piano,asap,pop909} where those folders exist."""
    if pairs:
        try:
            return dict(kv.split("=", 1) for kv in pairs)
        except ValueError:
            raise UserError(f"--data takes SOURCE=FOLDER pairs (piano, asap, pop909), got {pairs}") from None
    from .settings import current

    root = current().data
    roots = {s: f"{root}/{s}" for s in ("piano", "asap", "pop909") if root and Path(root, s).is_dir()}
    if not roots:
        raise UserError("no data: pass --data piano=DIR asap=DIR pop909=DIR (or set MUSICLAB_DATA to their parent)")
    return roots


def _validation_set(a):
    """(data roots, the flagship corpus over them: its validation split is what no model saw)."""
    from .training import corpus
    from .training.dataset import CACHE_DIR

    roots = _data_roots(a.data)
    try:
        return roots, corpus.build(roots, CACHE_DIR / "corpus", log=lambda *x: None)
    except ValueError as e:
        raise UserError(str(e)) from None


def _print_table(a, rows: list[dict], keys, extra: dict | None = None) -> None:
    from .evaluation import quality

    summary = quality.table(rows, keys)
    if a.json:
        print(json.dumps({"summary": summary, **(extra or {}), "rows": rows}, indent=1))
    else:
        print(quality.markdown(summary, keys))
        for k, v in (extra or {}).items():
            print(f"{k}: {v}")


def cmd_bench_quality(a):
    from .evaluation import quality
    from .serving.weights import list_models, load_model

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
    from .evaluation import quality
    from .serving import weights
    from .training.cards import write_quality

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
    from .editing.constrained import check_model
    from .evaluation import editbench, quality
    from .serving.weights import load_model

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
        extra = {"infill_8_bars_s": editbench.speed_infill(model, spans, a.repeats)} if a.repeats else {}
    else:
        if "pop909" not in roots:
            raise UserError("bench accompany needs POP909: pass --data pop909=DIR (or set MUSICLAB_DATA)")
        songs = editbench.pick_songs(corp, roots["pop909"], a.pieces)
        if not songs:
            raise UserError("no validation POP909 song with MELODY and PIANO tracks and 30 s of melody was found")
        log(f"{len(songs)} validation POP909 songs, {editbench.ACCOMPANY_S:g} s each")
        rows = editbench.run_accompany(model, songs, a.takes, log=log)
        keys = ("chord_tone", "on_grid", "notes_per_s")
        extra = {"accompany_30_s": editbench.speed_accompany(model, songs, a.repeats)} if a.repeats else {}
    _print_table(a, rows, keys, extra)


def cmd_bench(a):
    from .evaluation.bench import bench_generate

    if a.seconds <= 0 or a.repeats < 1:
        raise UserError(f"bench needs --seconds > 0 and --repeats >= 1, got {a.seconds:g} and {a.repeats}")
    if a.threads is not None and a.threads < 1:
        raise UserError(f"--threads must be at least 1, got {a.threads}")
    import torch

    torch.set_num_threads(1)
    bench_generate(as_json=a.json, models=a.models, seconds=a.seconds, repeats=a.repeats, threads=a.threads)


def cmd_evaluate(a):
    if a.file == "jsb":
        if not a.split:
            raise UserError("evaluate jsb needs --split FILE.json (a JSB Chorales split)")
        try:
            from .evaluation.jsb import evaluate_jsb
        except ModuleNotFoundError as e:
            if e.name != "musiclab.evaluation.jsb":
                raise
            raise UserError(
                "the JSB Chorales benchmark (musiclab/evaluation/jsb.py) is not part of this install"
            ) from None
        res = evaluate_jsb(a.split, a.model)
        if a.json:
            print(json.dumps(res, indent=1, default=str))
            return
        print(f"{'model':<22} {'nll':>8} {'steps':>8} {'accuracy':>9}")
        for r in res["results"]:
            print(f"{r['model']:<22} {r['nll']:>8.4f} {r['steps']:>8} {r['accuracy']:>9.4f}")
        return
    if a.split or a.model:
        raise UserError("--split and --model are for `evaluate jsb`; for a MIDI file use --against/--corpus/--seed-end")
    from .evaluation.evaluate import evaluate_file, format_report, load_corpus
    from .midi.io import load_midi

    pm = load_midi(a.file)
    against = load_midi(a.against) if a.against else None
    corpus = None
    if a.corpus:
        corpus, skipped = load_corpus(a.corpus)
        if skipped:
            print(f"note: skipped {len(skipped)} unreadable corpus file(s), e.g. {skipped[0]}", file=sys.stderr)
    r = evaluate_file(pm, against=against, corpus=corpus, seed_end=a.seed_end)
    if a.json:
        out = {"key": r["key"], r["columns"][0]: r["a"], "distance": r["distance"]}
        if r["b"] is not None:
            out[r["columns"][1]] = r["b"]
        print(json.dumps(out, indent=1))
    else:
        print(format_report(r))


def _add_sampling(s) -> None:
    s.add_argument("--temperature", type=_finite(float), default=1.0)
    s.add_argument("--top-k", type=_finite(int), default=0)
    s.add_argument("--top-p", type=_finite(float), default=1.0)
    s.add_argument("--min-p", type=_finite(float), default=0.0)
    s.add_argument("--repetition-penalty", type=_finite(float), default=1.0)
    s.add_argument("--key-lock", action="store_true")
    s.add_argument("--variations", type=_finite(int), default=1)
    s.add_argument("--random-seed", type=_random_seed, default=None)


def _add_job(sub, name: str, help: str):
    s = sub.add_parser(name, help=help)
    s.add_argument("--model", required=True, help="a model that reads bar/note tokens (the flagship)")
    s.add_argument("--input", required=True, help="MIDI file")
    s.add_argument("--out", required=True, help="OUT.mid (several takes: OUT-1.mid ...)")
    s.add_argument("--wav", help="also write audio")
    _add_sampling(s)
    return s


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m musiclab", description="musiclab: neural MIDI continuation")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    s = sub.add_parser("models", help="list shipped models")
    s.add_argument("--json", action="store_true")
    s.add_argument("--markdown", action="store_true", help="the README's model table")
    s.set_defaults(fn=cmd_models)
    s = sub.add_parser("check", help="summary of a MIDI file, or why it cannot be used")
    s.add_argument("file")
    s.set_defaults(fn=cmd_check)
    s = sub.add_parser("generate", help="continue a seed MIDI file")
    s.add_argument("--model", required=True)
    s.add_argument("--seed", required=True, help="seed MIDI file")
    s.add_argument("--seed-seconds", type=_finite(float), required=True)
    s.add_argument("--seconds", type=_finite(float), required=True, help="seconds of new music")
    _add_sampling(s)
    s.add_argument(
        "--tracks", type=_tracks, default=None, help="comma-separated track numbers (1-based); default all non-drum"
    )
    s.add_argument("--out", required=True)
    s.add_argument("--wav", default=None)
    s.set_defaults(fn=cmd_generate)
    s = _add_job(sub, "infill", "regenerate the notes that start between --start and --end seconds")
    s.add_argument("--start", type=_finite(float), required=True, help="span start, seconds")
    s.add_argument("--end", type=_finite(float), required=True, help="span end, seconds")
    s.add_argument("--tracks", type=_tracks, help="tracks to infill, 1-based: 1,2 (default: every non-drum track)")
    s.set_defaults(fn=cmd_infill)
    s = _add_job(sub, "accompany", "write a piano accompaniment under a melody track")
    s.add_argument("--melody-track", type=_finite(int), required=True, help="the melody's track, 1-based")
    s.add_argument("--start", type=_finite(float), help="seconds (default: the melody's first note)")
    s.add_argument("--end", type=_finite(float), help="seconds (default: the melody's last note)")
    s.set_defaults(fn=cmd_accompany)
    s = sub.add_parser("train", help="train an architecture on a folder of MIDI files")
    s.add_argument("--arch", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--config", help="JSON file with TrainConfig fields")
    s.add_argument("--epochs", type=int)
    s.add_argument("--steps-per-epoch", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--optimizer")
    s.add_argument("--patience", type=int)
    s.add_argument("--max-files", type=int)
    s.add_argument("--max-parse-seconds", type=float)
    s.add_argument("--time-budget-minutes", type=float)
    s.add_argument("--seed", type=int)
    s.add_argument("--set", action="append", help="model config override KEY=JSON, repeatable")
    s.add_argument("--resume", action="store_true")
    s.set_defaults(fn=cmd_train)
    s = sub.add_parser("train-flagship", help="train (or resume) the flagship on piano-midi.de, ASAP and POP909")
    s.add_argument("--data", nargs="+", metavar="SOURCE=FOLDER", help="default: $MUSICLAB_DATA/{piano,asap,pop909}")
    s.add_argument("--run", required=True, help="run folder for checkpoints and curves (resumed if present)")
    s.add_argument("--out", required=True, help="weights folder for the finished model")
    s.add_argument("--config", help="JSON file with PretrainConfig fields (configs/flagship.json)")
    s.add_argument("--max-minutes", type=float, help="stop with a checkpoint after this long")
    s.set_defaults(fn=cmd_train_flagship)
    s = sub.add_parser("bench", help="benchmarks")
    bsub = s.add_subparsers(dest="what", required=True, parser_class=_Parser)
    b = bsub.add_parser("generate", help="generation speed per model vs the naive window re-run")
    b.add_argument("--json", action="store_true")
    b.add_argument("--models", nargs="*")
    b.add_argument("--seconds", type=_finite(float), default=30.0)
    b.add_argument("--repeats", type=_finite(int), default=3)
    b.add_argument(
        "--threads",
        type=_finite(int),
        default=None,
        help="torch intra-op threads per generation (default: as the app for one user, see engine_threads)",
    )
    b.set_defaults(fn=cmd_bench)
    b = bsub.add_parser("quality", help="continuations of unseen pieces vs their real continuation, per source")
    b.add_argument("--data", nargs="+", metavar="SOURCE=FOLDER", help="default: $MUSICLAB_DATA/{piano,asap,pop909}")
    b.add_argument("--models", nargs="*")
    b.add_argument("--pieces", type=_finite(int), default=8, help="validation pieces per source")
    b.add_argument("--takes", type=_finite(int), default=2)
    b.add_argument("--seconds", type=_finite(float), default=30.0)
    b.add_argument("--json", action="store_true")
    b.add_argument("--cards", action="store_true", help="also write each model's rows into its card (weights/)")
    b.set_defaults(fn=cmd_bench_quality)
    for what, help_ in (("infill", "4-bar infills of unseen pieces vs the real bars, repeating, continuing only"),
                        ("accompany", "accompaniments of unseen POP909 melodies: chord tones, grid, vs real")):  # fmt: skip
        b = bsub.add_parser(what, help=help_)
        b.add_argument("--data", nargs="+", metavar="SOURCE=FOLDER", help="default: $MUSICLAB_DATA/{piano,asap,pop909}")
        b.add_argument("--model", default="flagship")
        b.add_argument("--pieces", type=_finite(int), default=8, help="validation pieces (songs) per source")
        b.add_argument("--takes", type=_finite(int), default=2)
        if what == "infill":
            b.add_argument("--bars", type=_finite(int), default=4, help="bars per span (4)")
        b.add_argument("--repeats", type=_finite(int), default=3, help="timed single takes (0: no timing)")
        b.add_argument("--json", action="store_true")
        b.set_defaults(fn=cmd_bench_edit)
    s = sub.add_parser("evaluate", help="metrics of a MIDI file (vs a seed or corpus), or `evaluate jsb`")
    s.add_argument("file", help="MIDI file, or `jsb` for the JSB Chorales benchmark")
    s.add_argument("--against", help="reference MIDI file (e.g. the seed)")
    s.add_argument("--corpus", help="folder of reference MIDI files")
    s.add_argument("--seed-end", type=_finite(float), help="compare the file after this many seconds vs before")
    s.add_argument("--split", help="jsb: JSB Chorales split JSON file")
    s.add_argument("--model", action="append", help="jsb: model name, repeatable (default: all)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_evaluate)
    return p


def main(argv=None) -> int:
    from .generation.sampling import SettingsError
    from .midi.io import MidiError

    try:
        args = build_parser().parse_args(argv)
        args.fn(args)
        return 0
    except (UserError, MidiError, SettingsError, ValueError, FileNotFoundError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
