"""Model cards name their data by source and licence, never by a path on one machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from musiclab.training.cards import data_name, describe_data

ROOT = Path(__file__).resolve().parent.parent
CARDS = sorted((ROOT / "weights").glob("*/config.json"))


def test_known_corpora_are_named_by_source_and_licence(tmp_path):
    assert describe_data("/srv/corpora/piano").startswith("piano-midi.de (") and "CC BY-SA" in describe_data("piano")
    assert (
        "public domain" in describe_data(tmp_path / "jsb")
        and data_name({"data": describe_data("jsb")}) == "JSB Chorales"
    )
    assert "non-commercial" in describe_data("ASAP")
    assert describe_data(tmp_path / "my_songs") == "my_songs (source and licence not recorded)"  # no machine path


@pytest.mark.parametrize("path", CARDS, ids=[p.parent.name for p in CARDS])
def test_shipped_cards_name_source_and_licence(path):
    card = json.loads(path.read_text())
    readme = (path.parent / "README.md").read_text()
    assert "/shared/" not in card["data"] + card["command"] + readme
    assert not any(str(v).startswith("/") for v in card.get("training", {}).values())  # no path of this machine
    assert "../" not in card["data"] and any(
        describe_data(k) in card["data"] for k in ("piano", "jsb", "asap", "pop909")
    )
    assert f"- Data: {card['data']}" in readme
