"""Ship a flagship run: its checkpoint -> ``weights/<name>/`` (fp16 safetensors + config.json + README card).

The card names its data by source and licence (ASAP's non-commercial terms included), gives the
recipe, the hours it took, the curves, the held-out metrics, the command that reproduces it, and
``greedy_check``: the ids a greedy decode of a bundled example's opening gives with the shipped
weights, which a test decodes again after loading them strictly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..codecs.barnote_state import BarNoteTokenizer
from ..midi.examples import list_examples
from ..midi.io import load_midi, seed_excerpt
from ..models import build_model
from ..serving.weights import save_weights
from .cards import CORPORA
from .pretrain import warm_start

GREEDY_SEED = "Joplin — Maple Leaf Rag (piano)"
GREEDY_STEPS = 64
COMMAND = (
    "python -m musiclab train-flagship --data piano=PIANO_MIDI_DIR asap=ASAP_DIR pop909=POP909_DIR "
    "--run RUN1 --out weights/flagship --config configs/flagship.json  # resumable; run again after a stop\n"
    "# each later run starts from the weights of the one before:\n"
    "python -m musiclab train-flagship --data ... --run RUN2 --init RUN1 --out weights/flagship --config configs/flagship-run2.json\n"
    "python -m musiclab train-flagship --data ... --run RUN3 --init RUN2 --out weights/flagship --config configs/flagship-run3.json\n"
    "python -m musiclab train-flagship --data ... --run RUN4 --init RUN3 --out weights/flagship --config configs/flagship-run4.json\n"
    "python -m musiclab train-flagship --data ... --run RUN5 --init RUN4 --out weights/flagship --config configs/flagship-run5.json\n"
    "# one key/value head a layer, from the mean of run 5's four (grouped-query uptraining), started from\n"
    "# run 5 as shipped (fp16): FLAGSHIP5 = a copy of weights/flagship exported from RUN5\n"
    "python -m musiclab train-flagship --data ... --run RUN6 --init FLAGSHIP5 --out weights/flagship --config configs/flagship-run6.json"
)


@torch.no_grad()
def greedy_ids(model, tokenizer: BarNoteTokenizer, steps: int = GREEDY_STEPS) -> list[int]:
    """Argmax ids after the first 8 s of the bundled Joplin rag (no grammar: the weights alone)."""
    pm = load_midi(list_examples()[GREEDY_SEED])
    prompt = tokenizer.prompt(seed_excerpt(pm, 8.0), 8.0)
    logits, cache = model.prefill(tokenizer.prompt_tensor(prompt, 1))
    out = []
    for _ in range(steps):
        nxt = logits.float().argmax(-1)
        out.append(int(nxt[0]))
        logits, cache = model.step(nxt, cache)
    return out


def curves(run: Path, points: int = 60) -> dict:
    """Train loss (EMA) at ~``points`` steps and every held-out evaluation, from curves.jsonl."""
    rows = [json.loads(r) for r in (run / "curves.jsonl").read_text().splitlines() if r]
    every = max(1, len(rows) // points)
    return {
        "train": [[r["step"], r["ema"]] for r in rows[::every]],
        "valid": [[r["step"], r["valid"]] for r in rows if "valid" in r],
    }


def run_chain(run: Path) -> list[dict]:
    """The runs that made ``run``'s weights, first to last: each started from the one before
    (``init``: a run folder, or a shipped model's folder whose card lists its runs). Per run: its
    folder's name, steps, hours and schedule settings."""
    meta = json.loads((Path(run) / "checkpoint.json").read_text())
    cfg = meta["config"]
    keys = ("total_steps", "stop_at", "warmup_steps", "lr", "min_lr", "examples")
    this = {"run": Path(run).name, "steps": meta["step"], "hours": round(meta["spent_seconds"] / 3600, 2)}
    this |= {k: cfg.get(k) for k in keys if cfg.get(k) is not None}
    init = Path(cfg["init"]) if cfg.get("init") else None
    if init and (init / "checkpoint.json").exists():
        return run_chain(init) + [this]
    if init and (init / "config.json").exists():  # a shipped model's folder: the runs its card lists
        return json.loads((init / "config.json").read_text()).get("runs", []) + [this]
    return [this]


def export(run: Path, out: Path, metrics: dict | None = None, sampling: dict | None = None) -> dict:
    """Write ``out`` from the run's checkpoint; returns the card. ``sampling``: the app's defaults
    for this model (generation/sampling.app_defaults), chosen with bench quality; by default the
    ones ``out`` has already, as is its quality table (bench quality --cards)."""
    run, out = Path(run), Path(out)
    before = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else {}
    sampling = before.get("sampling", {}) if sampling is None else sampling
    meta = json.loads((run / "checkpoint.json").read_text())
    cfg = meta["config"]
    tokenizer = BarNoteTokenizer()
    model = build_model(cfg["arch"], {"vocab_size": tokenizer.vocab_size,
                                      "block_size": cfg["examples"].get("block_size", 1024), **cfg["model"]})  # fmt: skip
    warm_start(model, run)  # the run's own weights, strictly
    model.eval()
    corpus = json.loads((run / "corpus.json").read_text())["summary"]
    chain = run_chain(run)
    cur = curves(run)
    last = cur["valid"][-1][1] if cur["valid"] else {}
    sources = sorted({r["source"] for r in corpus})
    training = {k: v for k, v in cfg.items() if k not in ("run", "out", "data")} | {"data": sources}
    if cfg.get("init"):  # the folder's name only: a card names no path on the training machine
        training["init"] = Path(cfg["init"]).name
    card = {
        "arch": cfg["arch"],
        "name": out.name,
        "paper": "musiclab's own (no paper): decoder-only Transformer over bar/note tokens",
        "description": type(model).description,
        "tokenizer": tokenizer.to_dict(),
        "params": sum(p.numel() for p in model.parameters()),
        "data": "; ".join(CORPORA[s] for s in sources),
        "data_splits": corpus,
        "licence_note": "Trained partly on ASAP (CC BY-NC-SA 4.0): these weights are for non-commercial use.",
        "training": training,
        "steps": sum(r["steps"] for r in chain),
        "runs": chain,
        "train_hours": round(sum(r["hours"] for r in chain), 2),
        "trained_on": "a 2-core CPU (AMD EPYC, bf16 autocast), shared with other work",
        "curves": cur,
        "metrics": {
            "valid_nll": last.get("continue"),
            "valid_nll_by_task": last,
            "nll_unit": "nats per bar/note token",
            **(metrics or {}),
        },  # fmt: skip
        "sampling": sampling or {},
        "command": COMMAND,
    }
    save_weights(model, out, card, half=True)
    shipped = build_model(cfg["arch"], json.loads((out / "config.json").read_text())["model"])
    from safetensors.torch import load_model as st_load_model

    st_load_model(shipped, str(out / "model.safetensors"), strict=True)
    card = json.loads((out / "config.json").read_text())
    card["greedy_check"] = {
        "seed": GREEDY_SEED,
        "seed_seconds": 8.0,
        "ids": greedy_ids(shipped.float().eval(), tokenizer),
    }
    (out / "config.json").write_text(json.dumps(card, indent=1) + "\n")
    write_readme(out, card)
    if before.get("quality"):  # the last bench quality --cards table, until the next one
        from ..evaluation.quality import markdown
        from .cards import write_quality

        rows = before["quality"]["rows"]
        write_quality(out, card["name"], rows, markdown(rows), before["quality"]["how"])
        card["quality"] = before["quality"]
    if before.get("chords") and (out / "chords.safetensors").exists():  # the chord model ships beside it
        from .cards import put_section
        from .chords import readme_section

        card["chords"] = before["chords"]
        (out / "config.json").write_text(json.dumps(card, indent=1) + "\n")
        put_section(out, "chord model", readme_section(before["chords"]))
    return card


def write_readme(out: Path, card: dict) -> None:
    m = card["metrics"]
    rows = "\n".join(
        f"| {r['source']} | {r['split']} | {r['files']} | {r['pieces']} | {r['hours']} | {r['notes']:,} | {r['tokens']:,} |"
        for r in card["data_splits"]
    )
    valid = "\n".join(
        f"| {s} | " + " | ".join(f"{v[k]:.3f}" for k in sorted(v)) + " |" for s, v in card["curves"]["valid"]
    )
    tasks = sorted(card["curves"]["valid"][-1][1]) if card["curves"]["valid"] else []
    runs = "\n".join(
        f"  - `{r['run']}`: {r['steps']:,} steps"
        + (f" (stopped at {r['stop_at']:,})" if r.get("stop_at") else "")
        + f", {r['hours']} h; cosine {r['lr']} -> {r['min_lr']} over {r['total_steps']:,} steps after"
        f" {r['warmup_steps']} warm-up; examples {r['examples']}"
        for r in card["runs"]
    )
    text = f"""# {card["name"]} — {card["arch"]}

{card["description"]}

- Parameters: {card["params"]:,} (fp16 file, fp32 at run time)
- Tokens: bar/note (`musiclab/codecs/barnote.py`), {card["tokenizer"]}
- Data: {card["data"]}
- **Licence of the weights:** {card["licence_note"]}
- Training: {card["steps"]:,} steps of {card["training"]["batch_size"]} x 1,024 tokens, {card["train_hours"]} h on {card["trained_on"]};
  AdamW, weight decay {card["training"]["weight_decay"]}, in {len(card["runs"])} run(s), each from the weights of the one before:
{runs}

## Data (split by piece; near-duplicates across collections kept on one side)

| source | split | files | pieces | hours | notes | tokens |
|---|---|---:|---:|---:|---:|---:|
{rows}

## Held-out metrics

{json.dumps({k: v for k, v in m.items()}, indent=1)}

## Held-out NLL per task (nats per token) during training

| step | {" | ".join(tasks)} |
|---:|{"---:|" * len(tasks)}
{valid}

## Reproduce

```
{card["command"]}
```
"""
    (Path(out) / "README.md").write_text(text)
