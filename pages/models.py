"""Models: every model's card — architecture, size, data, loss curves, metrics vs baseline."""

import streamlit as st

from musiclab.app.common import cached_models, ensure_frame
from musiclab.app.models import model_card

ensure_frame()

st.title("Models")
rows = cached_models()
if not rows:
    st.error(
        "No models found in weights/. Train one: python -m musiclab train --arch lstm --data DIR --out weights/lstm"
    )
    st.stop()
ok = [r for r in rows if r["status"] == "ok"]
st.caption(f"{len(ok)} of {len(rows)} models available. Held-out figures are on the valid split of their data.")
st.dataframe(
    [
        {
            "model": r["name"],
            "architecture": r["architecture"],
            "status": r["status"],
            "params": r["params"],
            "valid NLL": (r.get("metrics") or {}).get("valid_nll"),
            "baseline NLL": (r.get("metrics") or {}).get("baseline_nll"),
            "accuracy": (r.get("metrics") or {}).get("valid_accuracy"),
        }
        for r in rows
    ],
    hide_index=True,
)
for r in rows:
    model_card(r)
