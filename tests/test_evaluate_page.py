"""AppTest of the Evaluate page with a shipped model and a bundled example seed."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from musiclab.serving.weights import list_models

PAGE = Path(__file__).resolve().parent.parent / "pages" / "evaluate.py"


@pytest.fixture(scope="module")
def model_name() -> str:
    ok = [r["name"] for r in list_models() if r["status"] == "ok"]
    if not ok:
        pytest.fail("no loadable model in weights/: the Evaluate page needs one shipped model")
    return "lstm" if "lstm" in ok else ok[0]


def small_run(model_name: str) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    assert not at.exception
    at.multiselect(key="eval_models").set_value([model_name])
    at.multiselect(key="eval_examples").set_value([at.multiselect(key="eval_examples").options[1]])
    at.slider(key="eval_takes").set_value(2)
    at.slider(key="eval_seed_seconds").set_value(4.0)
    at.slider(key="eval_seconds").set_value(3)
    return at


def test_run_shows_charts_table_and_survives_rerun(model_name):
    at = small_run(model_name)
    assert at.info and "Run" in at.info[0].value  # nothing run yet
    at.button(key="eval_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    rows = at.session_state["eval_results"]["rows"]
    assert len(rows) == 2 and {r["model"] for r in rows} == {model_name}
    assert len(at.get("plotly_chart")) == 2
    table = at.dataframe[-1].value
    assert len(table) == 2 and {"cont_in_key", "seed_in_key", "pc_wasserstein"} <= set(table.columns)
    assert 0 <= table["cont_in_key"].min() <= table["cont_in_key"].max() <= 1
    # another metric, another rerun: results stay without running again
    at.selectbox(key="eval_metric").set_value("repetition").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2 and len(at.dataframe[-1].value) == 2


def test_no_seed_is_a_clear_error(model_name):
    at = small_run(model_name)
    at.multiselect(key="eval_examples").set_value([])
    at.button(key="eval_run").click().run()
    assert not at.exception
    assert at.error and "seed" in at.error[0].value
    assert "eval_results" not in at.session_state


def test_settings_survive_a_visit_to_another_page():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGE.parent.parent / "app.py"), default_timeout=120).run()
    at.switch_page("pages/evaluate.py").run()
    at.slider(key="eval_takes").set_value(5)
    at.slider(key="eval_seconds").set_value(30).run()
    at.switch_page("pages/models.py").run()
    at.switch_page("pages/evaluate.py").run()
    assert not at.exception
    assert at.slider(key="eval_takes").value == 5 and at.slider(key="eval_seconds").value == 30
