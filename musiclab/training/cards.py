"""Model cards: README.md next to each model's weights, written from its config.json."""

from __future__ import annotations

import json
from pathlib import Path

# Training corpora by folder name: a card names its data by source and licence, never by a path.
CORPORA = {
    "piano": "piano-midi.de (classical piano MIDI by Bernd Krueger, CC BY-SA 3.0 DE; weights trained on it: same terms)",
    "jsb": "JSB Chorales (split of Boulanger-Lewandowski et al. 2012; chorales by J. S. Bach, public domain)",
    "asap": "ASAP (Foscarin et al., ISMIR 2020; CC BY-NC-SA 4.0: weights trained on it are non-commercial)",
    "pop909": "POP909 (Wang et al., ISMIR 2020; MIT)",
}


def describe_data(folder: str | Path) -> str:
    """What a card says a training folder is: its source and licence when musiclab knows the
    corpus (by folder name, see CORPORA), else the folder's name only."""
    name = Path(folder).resolve().name
    return CORPORA.get(name.lower(), f"{name} (source and licence not recorded)")


def data_name(card: dict) -> str:
    """The short name of a card's data ("piano-midi.de", "JSB Chorales"), e.g. for the README table."""
    return " + ".join(part.split(" (")[0] for part in str(card.get("data") or "?").split("); "))  # one per corpus


def write_card_readme(out: Path, card: dict) -> None:
    m = card.get("metrics", {})
    cur = card.get("curves", {})
    rows = "\n".join(
        f"| {i + 1} | {t:.4f} | {v:.4f} | {a:.3f} |"
        for i, (t, v, a) in enumerate(zip(cur.get("train", []), cur.get("valid", []), cur.get("valid_acc", [])))
    )
    ref = card.get("reference_shape")
    frames = card.get("tokenizer", {}).get("kind") == "pianoroll"
    unit, acc = ("nats/frame, 88 keys summed", "frame accuracy") if frames else ("nats/token", "top-1 accuracy")
    text = f"""# {card.get("name")} — {card.get("arch")}

Paper: {card.get("paper")}

{card.get("description", "")}

- Parameters: {card.get("params", 0):,}
- Data: {card.get("data")}
- Tokenizer: `{card.get("tokenizer")}`
- Shipped shape: `{card.get("model")}`
{f"- Paper's shape (build it with `--config`): `{ref}`" if ref else ""}
- Epochs: {card.get("epochs")} ({card.get("train_minutes")} min on {card.get("trained_on", "a 2-core CPU")})

## Held-out metrics (valid split)

| | NLL ({unit}) | {acc} |
|---|---:|---:|
| this model | {m.get("valid_nll")} | {m.get("valid_accuracy")} |
| {m.get("baseline")} | {m.get("baseline_nll")} | |

NLL improvement over the baseline: {100 * (m.get("nll_vs_baseline") or 0):.1f}% (target: at least 10%).

## Reproduce

```
{card.get("command") or "see training in config.json"}
```

## Training curve (per epoch)

| epoch | train loss | valid NLL | valid acc |
|---:|---:|---:|---:|
{rows}
"""
    (Path(out) / "README.md").write_text(text)


def put_section(folder: Path, tag: str, text: str) -> None:
    """Put ``text`` at the end of ``folder``'s README.md between ``<!-- tag -->`` marks, in place
    of the one a run before wrote."""
    begin, end = f"<!-- {tag} -->", f"<!-- /{tag} -->"
    readme = (Path(folder) / "README.md").read_text()
    if begin in readme and end in readme:
        readme = readme[: readme.index(begin)] + readme[readme.index(end) + len(end) :].lstrip()
    (Path(folder) / "README.md").write_text(f"{readme.rstrip()}\n\n{begin}\n{text.strip()}\n{end}\n")


def write_quality(folder: Path, name: str, summary: list[dict], markdown: str, how: str) -> None:
    """Put a quality benchmark's rows for model ``name`` (and the baselines) in its card: under
    ``quality`` in config.json, and as a section of README.md (replaced on the next run)."""
    folder = Path(folder)
    card = json.loads((folder / "config.json").read_text())
    card["quality"] = {"how": how, "rows": [r for r in summary if r["system"] in (name, "real", "seed loop",
                                                                                     "another piece")]}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(card, indent=1) + "\n")
    put_section(
        folder, "quality benchmark", f"## Quality benchmark (`python -m musiclab bench quality`)\n\n{how}\n\n{markdown}"
    )
