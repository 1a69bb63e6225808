"""The package layout a newcomer reads: subpackages by concept, each saying in one line what it
owns, and no import cycles between them (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "musiclab"
SUBPACKAGES = sorted(p.parent.name for p in PKG.glob("*/__init__.py"))


def _imports(path: Path) -> set[str]:
    """Dotted musiclab modules that ``path`` imports, anywhere in the file."""
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    here = parts[:-1]  # the package a relative import starts from
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - node.level + 1]
            out.add(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("musiclab"):
            out.add(node.module)
    return out


def test_every_subpackage_says_what_it_owns():
    assert {"app", "codecs", "evaluation", "generation", "listening", "midi", "models", "serving", "training"} <= set(
        SUBPACKAGES
    )
    for name in SUBPACKAGES:
        doc = ast.get_docstring(ast.parse((PKG / name / "__init__.py").read_text()))
        assert doc and doc.splitlines()[0].strip(), f"musiclab/{name}/__init__.py has no docstring"


def test_no_import_cycles_between_subpackages():
    graph: dict[str, set[str]] = {name: set() for name in SUBPACKAGES}
    for name in SUBPACKAGES:
        for path in (PKG / name).rglob("*.py"):
            for mod in _imports(path):
                parts = mod.split(".")
                if len(parts) > 1 and parts[1] in graph and parts[1] != name:
                    graph[name].add(parts[1])
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as e:
        raise AssertionError(f"import cycle between subpackages: {e.args[1]}") from None
    assert order.index("midi") < order.index("codecs") < order.index("models") < order.index("serving")


def test_every_codec_implements_the_codec_interface():
    from musiclab.codecs import Codec, make_tokenizer

    for kind in ("note-shift", "remi", "pianoroll"):
        assert isinstance(make_tokenizer({"kind": kind}), Codec), kind
