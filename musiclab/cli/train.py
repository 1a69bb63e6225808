"""Training: train (one architecture on a folder of MIDI files) and train-flagship."""

from __future__ import annotations

import json
from pathlib import Path

from .args import UserError, add_data, data_roots


def cmd_train(a):
    from ..training.train import TrainConfig, train

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
    from ..training.distributed import exit_worker

    exit_worker()  # under torchrun: skip interpreter teardown (gloo can abort there)


def cmd_train_flagship(a):
    from ..training.pretrain import PretrainConfig, train

    try:
        cfg = json.loads(Path(a.config).read_text()) if a.config else {}
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read --config {a.config}: {e}") from None
    cfg.update(run=a.run, out=a.out, data=data_roots(a.data))
    if a.max_minutes is not None:
        cfg["max_minutes"] = a.max_minutes
    if a.init:
        cfg["init"] = a.init
    try:
        pc = PretrainConfig(**cfg)
    except TypeError as e:
        raise UserError(f"bad flagship training config: {e}") from None
    try:
        run = train(pc)
    except ValueError as e:
        raise UserError(str(e)) from None
    if json.loads((run / "checkpoint.json").read_text())["step"] >= pc.total_steps:  # finished: ship it
        from ..training.export import export

        try:
            card = export(run, Path(pc.out))
        except (OSError, ValueError) as e:
            raise UserError(f"the run finished but could not be shipped to {pc.out}: {e}") from None
        print(f"shipped {pc.out}: {card['params']:,} parameters, {card['steps']:,} steps, {card['train_hours']} h")


def cmd_train_chords(a):
    from ..serving.weights import read_card
    from ..training import chords, corpus
    from ..training.dataset import CACHE_DIR

    if a.steps < 1:
        raise UserError(f"--steps must be at least 1, got {a.steps}")
    roots = data_roots(a.data)
    if "pop909" not in roots:
        raise UserError("train-chords reads POP909's melodies and chords: pass --data pop909=DIR (or MUSICLAB_DATA)")
    out = Path(a.out)
    if not (out / "config.json").is_file():
        raise UserError(f"--out {out} is not a weights folder (no config.json): the chord model ships beside a model")
    try:
        read_card(out.name, out.parent)  # a card that cannot take the entry is refused before minutes of work
        corp = corpus.build(roots, CACHE_DIR / "corpus", log=lambda *x: None)
        entry = chords.run(corp, roots["pop909"], out, chords.ChordTrainConfig(steps=a.steps))
    except ValueError as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"could not write the chord model into {out}: {e}") from None
    print(f"shipped {out / 'chords.safetensors'}: valid precision {entry['valid_precision']} "
          f"(rules {entry['valid_precision_rules']}), {entry['train_minutes']} min")  # fmt: skip


def add_parsers(sub) -> None:
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
    add_data(s)
    s.add_argument("--run", required=True, help="run folder for checkpoints and curves (resumed if present)")
    s.add_argument("--out", required=True, help="weights folder for the finished model")
    s.add_argument("--config", help="JSON file with PretrainConfig fields (configs/flagship.json)")
    s.add_argument("--max-minutes", type=float, help="stop with a checkpoint after this long")
    s.add_argument("--init", help="a finished run folder whose weights start a new run (its own schedule)")
    s.set_defaults(fn=cmd_train_flagship)
    s = sub.add_parser("train-chords", help="train the chord model an accompaniment follows (POP909), beside a model")
    add_data(s, "pop909")
    s.add_argument("--out", default="weights/flagship", help="the weights folder it ships in (default: the flagship's)")
    s.add_argument("--steps", type=int, default=2000)
    s.set_defaults(fn=cmd_train_chords)
