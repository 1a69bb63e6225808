"""Model-card rendering for the Models page: summary, metrics vs baseline, plotly loss curves."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from ..serving.weights import read_card


def loss_figure(curves: dict, frames: bool = False) -> go.Figure:
    """Train loss and valid NLL per epoch, in nats per token, or for piano-roll models
    (``frames``) in nats per frame summed over the 88 keys: their training loss is a mean per
    key, so it is scaled by 88 to share the axis."""
    scale = 88 if frames else 1
    fig = go.Figure()
    train, valid = curves.get("train") or [], curves.get("valid") or []
    if train and isinstance(train[0], list):  # per step: [step, loss] and [step, {task: NLL}] (the flagship)
        fig.add_trace(go.Scatter(x=[s for s, _ in train], y=[y for _, y in train], mode="lines", name="train loss"))
        for task in valid[-1][1] if valid else []:
            ys = [v[task] for _, v in valid]
            fig.add_trace(go.Scatter(x=[s for s, _ in valid], y=ys, mode="lines+markers", name=f"valid NLL, {task}"))
        xaxis = "step"
    else:
        for key, label in (("train", "train loss" + (" x 88 keys" if frames else "")), ("valid", "valid NLL")):
            ys = [y * (scale if key == "train" else 1) for y in curves.get(key) or []]
            fig.add_trace(go.Scatter(x=list(range(1, len(ys) + 1)), y=ys, mode="lines+markers", name=label))
        xaxis = "epoch"
    fig.update_layout(
        height=260,
        margin={"l": 40, "r": 10, "t": 10, "b": 30},
        xaxis_title=xaxis,
        yaxis_title="nats per frame (88 keys)" if frames else "nats per token",
        legend={"orientation": "h", "y": 1.15},
    )
    return fig


def model_card(row: dict) -> None:
    name = row["name"]
    with st.container(border=True):
        if row["status"] != "ok":
            st.subheader(f"{name} — unavailable")
            st.error(row["error"])
            return
        card = read_card(name)
        arch = card.get("arch")
        st.subheader(name if arch == name else f"{name} · {arch}")
        frames = card.get("tokenizer", {}).get("kind") == "pianoroll"
        unit = "nats per frame (88 keys summed)" if frames else "nats per token"
        st.write(card.get("paper", ""))
        if card.get("description"):
            st.caption(card["description"])
        m = card.get("metrics", {})
        c = st.columns(4)
        c[0].metric("Parameters", f"{row['params']:,}")
        c[1].metric("Valid NLL", m.get("valid_nll"), help=f"{unit} on the held-out split; lower is better")
        gain = m.get("nll_vs_baseline")
        c[2].metric(
            f"vs {m.get('baseline', 'baseline')}",
            m.get("baseline_nll"),
            delta=f"{100 * gain:.1f}% better" if gain is not None else None,
        )
        c[3].metric(
            "Valid frame accuracy" if frames else "Valid top-1 accuracy",
            m.get("valid_accuracy"),
            help="TP / (TP + FP + FN) over the notes of the most likely frames (Bay et al. 2009)"
            if frames
            else "share of held-out tokens whose most likely prediction is right",
        )
        length = (f"{card['steps']:,} steps · {card.get('train_hours')} h" if card.get("steps")
                  else f"epochs {card.get('epochs')} · {card.get('train_minutes')} min")  # fmt: skip
        st.caption(f"Data: {card.get('data', '?')} · {length}")
        if card.get("licence_note"):
            st.caption(card["licence_note"])
        if card.get("speed"):
            s = card["speed"]
            st.caption(
                f"Generation: {s.get('realtime_x_1')}x real time, {s.get('ms_per_token')} ms/token on {s.get('device')}"
            )
        if card.get("curves", {}).get("valid"):
            st.plotly_chart(loss_figure(card["curves"], frames), key=f"curve_{name}")
        if card.get("quality"):
            st.caption("Quality benchmark (`bench quality`): " + card["quality"]["how"])
            st.dataframe([r for r in card["quality"]["rows"] if r["source"] == "all"], hide_index=True)
        if card.get("command"):
            st.code(card["command"], language="bash")
