"""Making and reading music: models, check, generate, infill, accompany, evaluate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .args import UserError, add_sampling, finite, out_path, sampling, threads, track_numbers


def cmd_models(a):
    from .. import list_models

    rows = list_models()
    if a.json:
        print(json.dumps(rows, indent=1, default=str))
        return
    if a.markdown:  # the README's model table
        from ..serving.weights import read_card
        from ..training.cards import data_name

        print("| model | paper | params | data | valid NLL | baseline NLL | vs baseline | accuracy | epochs |")
        print("|---|---|---:|---|---:|---:|---:|---:|---:|")
        for r in rows:
            if r["status"] != "ok":
                print(f"| {r['name']} | unavailable: {r['error']} | | | | | | | |")
                continue
            c, m = read_card(r["name"]), r.get("metrics") or {}
            gain = m.get("nll_vs_baseline")
            paper = str(c.get("paper", ""))
            letter = "own" if paper.startswith("musiclab") else paper[:1]  # "E: Rao & Xie ..." -> E
            base = f"{m.get('baseline_nll')} ({m.get('baseline')})" if m.get("baseline") else "–"
            length = c.get("epochs") if c.get("epochs") is not None else f"{c.get('steps')} steps"
            print(
                f"| `{r['name']}` | {letter} | {r['params']:,} | {data_name(c)} | {m.get('valid_nll')} | {base} | "
                f"{'' if gain is None else f'{100 * gain:.0f}%'} | {m.get('valid_accuracy') or ''} | {length} |"
            )
        return
    for r in rows:
        m = r.get("metrics") or {}
        extra = f"valid NLL {m.get('valid_nll')} (baseline {m.get('baseline_nll')})" if m else ""
        if r["status"] != "ok":
            extra = f"UNAVAILABLE: {r['error']}"
        print(f"{r['name']:<22} {r['architecture'] or '?':<18} {r['params'] or 0:>10,} params  {extra}")


def cmd_check(a):
    from ..midi.io import load_midi, midi_summary

    print(json.dumps(midi_summary(load_midi(a.file)), indent=1))


def cmd_generate(a):
    from .. import generate, load_midi, load_model
    from ..generation.sampling import engine_threads

    out_path(a.out, "--out", (".mid", ".midi"))
    if a.wav:
        out_path(a.wav, "--wav", (".wav",))
    from ..generation.threads import serving_threads

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
        **sampling(a),
    )
    _write_takes(takes, a.out, a.wav)


def _write_takes(takes, out: str, wav: str | None) -> None:
    """OUT.mid (one take) or OUT-1.mid ... OUT-V.mid, and the same for --wav."""
    from ..midi.io import midi_to_bytes

    def paths(p: str, ext: str) -> list[Path]:
        if len(takes) == 1:
            return [Path(p)]
        return [Path(p).with_name(f"{Path(p).stem}-{i + 1}{ext}") for i in range(len(takes))]

    for take, path in zip(takes, paths(out, ".mid")):
        path.write_bytes(midi_to_bytes(take.midi))
        print(f"wrote {path} ({take.midi.get_end_time():.1f} s, random seed {take.info['random_seed']})")
    if wav:
        import soundfile as sf

        from .. import render_audio

        for take, path in zip(takes, paths(wav, ".wav")):
            audio, sr = render_audio(take)
            sf.write(str(path), audio, sr)
            print(f"wrote {path}")


def cmd_infill(a):
    from ..editing.infill import infill

    model, pm = _job_inputs(a)
    tracks = _check_tracks(a.tracks, pm)
    _write_takes(infill(model, pm, a.start, a.end, tracks=tracks, threads=threads(model), **sampling(a)), a.out, a.wav)


def cmd_accompany(a):
    from ..editing.accompany import accompany

    model, pm = _job_inputs(a)
    if not 1 <= a.melody_track <= len(pm.instruments):
        raise UserError(f"--melody-track {a.melody_track} does not exist; the file has tracks 1..{len(pm.instruments)}")
    takes = accompany(model, pm, a.melody_track - 1, start=a.start, end=a.end, replace_others=a.replace_others,
                      chords=a.chords, threads=threads(model), **sampling(a))  # fmt: skip
    _write_takes(takes, a.out, a.wav)


def _job_inputs(a):
    from .. import load_midi, load_model

    out_path(a.out, "--out", (".mid", ".midi"))
    if a.wav:
        out_path(a.wav, "--wav", (".wav",))
    return load_model(a.model), load_midi(a.input)


def _check_tracks(tracks: list[int] | None, pm) -> list[int] | None:
    if tracks and (max(tracks) > len(pm.instruments) or min(tracks) < 1):
        raise UserError(f"--tracks {tracks} is not accepted; the file has tracks 1..{len(pm.instruments)}")
    return [t - 1 for t in tracks] if tracks else None


def cmd_evaluate(a):
    if a.file == "jsb":
        if not a.split:
            raise UserError("evaluate jsb needs --split FILE.json (a JSB Chorales split)")
        try:
            from ..evaluation.jsb import evaluate_jsb
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
    from ..evaluation.evaluate import evaluate_file, format_report, load_corpus
    from ..midi.io import load_midi

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


def add_parsers(sub) -> None:
    """models, check, generate, infill, accompany (evaluate: add_evaluate_parser)."""
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
    s.add_argument("--seed-seconds", type=finite(float), required=True)
    s.add_argument("--seconds", type=finite(float), required=True, help="seconds of new music")
    add_sampling(s)
    s.add_argument(
        "--tracks",
        type=track_numbers,
        default=None,
        help="comma-separated track numbers (1-based); default all non-drum",
    )
    s.add_argument("--out", required=True)
    s.add_argument("--wav", default=None)
    s.set_defaults(fn=cmd_generate)
    s = _add_job(sub, "infill", "regenerate the notes that start between --start and --end seconds")
    s.add_argument("--start", type=finite(float), required=True, help="span start, seconds")
    s.add_argument("--end", type=finite(float), required=True, help="span end, seconds")
    s.add_argument(
        "--tracks", type=track_numbers, help="tracks to infill, 1-based: 1,2 (default: every non-drum track)"
    )
    s.set_defaults(fn=cmd_infill)
    s = _add_job(sub, "accompany", "write a piano accompaniment under a melody track")
    s.add_argument("--melody-track", type=finite(int), required=True, help="the melody's track, 1-based")
    s.add_argument("--start", type=finite(float), help="seconds (default: the melody's first note)")
    s.add_argument("--end", type=finite(float), help="seconds (default: the melody's last note)")
    s.add_argument("--replace-others", action="store_true",
                   help="drop the other pitched tracks' notes in the span (default: keep every track)")  # fmt: skip
    s.add_argument("--chords", help='chord symbols, one bar each from the first bar accompanied: "C Am F G", or '
                   '"C | Am | F G" (two chords share a bar); fewer repeat; default: estimated from the melody')  # fmt: skip
    s.set_defaults(fn=cmd_accompany)


def _add_job(sub, name: str, help: str):
    s = sub.add_parser(name, help=help)
    s.add_argument("--model", required=True, help="a model that reads bar/note tokens (the flagship)")
    s.add_argument("--input", required=True, help="MIDI file")
    s.add_argument("--out", required=True, help="OUT.mid (several takes: OUT-1.mid ...)")
    s.add_argument("--wav", help="also write audio")
    add_sampling(s)
    return s


def add_evaluate_parser(sub) -> None:
    s = sub.add_parser("evaluate", help="metrics of a MIDI file (vs a seed or corpus), or `evaluate jsb`")
    s.add_argument("file", help="MIDI file, or `jsb` for the JSB Chorales benchmark")
    s.add_argument("--against", help="reference MIDI file (e.g. the seed)")
    s.add_argument("--corpus", help="folder of reference MIDI files")
    s.add_argument("--seed-end", type=finite(float), help="compare the file after this many seconds vs before")
    s.add_argument("--split", help="jsb: JSB Chorales split JSON file")
    s.add_argument("--model", action="append", help="jsb: model name, repeatable (default: all)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_evaluate)
