"""Evaluate: N takes per model and seed, measured against the seed, compared in charts and a table."""

import streamlit as st

from musiclab.app.common import ACCEPTED, DEFAULT_MODELS, KEEP, cached_models, ensure_frame, sampling_knobs
from musiclab.app.evaluate import gather_seeds, run_with_progress
from musiclab.evaluation.evaluate import (
    LABELS,
    EvalSettings,
    distance_figure,
    metric_figure,
    results_frame,
    summary_frame,
    to_csv,
)
from musiclab.evaluation.metrics import SCALARS
from musiclab.midi.examples import list_examples

ensure_frame()

st.title("Evaluate")
st.caption(
    "Generate a few takes per model and seed, then compare what the continuations do with the seed's own "
    "statistics: key, repetition, density, polyphony, rhythm. Same settings and random seeds for every model."
)

ok = [r["name"] for r in cached_models() if r["status"] == "ok"]
if not ok:
    st.error("No model is available: the weights/ folder has no loadable model.")
    st.stop()

left, right = st.columns(2)
first = [n for n in DEFAULT_MODELS if n in ok][:1] or ok[:1]  # the same default as the other pages
models = left.multiselect("Models", ok, default=first, key="eval_models", persist_state=KEEP)
titles = list(list_examples())
chosen = right.multiselect("Example seeds", titles, default=titles[:1], key="eval_examples", persist_state=KEEP)
uploads = right.file_uploader(
    "Your seeds (optional)", type=["mid", "midi"], accept_multiple_files=True, key="eval_uploads", help=ACCEPTED
)
c = st.columns(4)
takes = c[0].slider("Takes each", 1, 8, 3, key="eval_takes", persist_state=KEEP)
seed_s = c[1].slider("Seed length (s)", 2.0, 30.0, 8.0, 0.5, key="eval_seed_seconds", persist_state=KEEP)
new_s = c[2].slider("Continue for (s)", 2, 60, 15, key="eval_seconds", persist_state=KEEP)
rseed = c[3].number_input("Random seed", 0, 2**31 - 1, 1, key="eval_random_seed", persist_state=KEEP)
knobs = sampling_knobs("eval_", expanded=False, variations=False, random_seed=False)

if st.button("Run", type="primary", disabled=not models, key="eval_run"):
    seeds = gather_seeds(chosen, uploads)
    if not seeds:
        st.error("Pick at least one example seed or upload a MIDI file.")
    else:
        settings = EvalSettings(
            takes=takes,
            seed_seconds=seed_s,
            seconds=float(new_s),
            random_seed=int(rseed),
            **knobs,
        )
        res = run_with_progress(models, seeds, settings)
        if res is not None:
            st.session_state["eval_results"] = res

res = st.session_state.get("eval_results")
if not res:
    st.info("Pick models and seeds, then press **Run**. Results stay here until the next run.")
    st.stop()
for err in res["errors"]:
    st.warning(err)
if not res["rows"]:
    st.error("No take was made; see the messages above.")
    st.stop()

df = results_frame(res["rows"])
s = res["settings"]
st.subheader("Per model (means over takes)")
st.caption(f"{len(df)} takes · {s['takes']} per model and seed · {s['seed_seconds']:g} s seed → {s['seconds']:g} s new")
st.dataframe(summary_frame(df))
metric = st.selectbox(
    "Metric", SCALARS, index=SCALARS.index("in_key"), format_func=LABELS.get, key="eval_metric", persist_state=KEEP
)
st.plotly_chart(metric_figure(df, metric), key="eval_metric_chart")
st.plotly_chart(distance_figure(df), key="eval_distance_chart")
st.subheader("All takes")
st.dataframe(df, hide_index=True)
st.download_button("Download CSV", to_csv(df), "musiclab-evaluation.csv", "text/csv", on_click="ignore")
