"""Compose: seed + model + controls -> takes you can hear, see, download and continue."""

import streamlit as st

from musiclab import SettingsError, generate, pianoroll_figure
from musiclab.midi_io import MidiError, load_midi
from musiclab.ui import (
    Progress,
    audio_for,
    cached_model,
    model_picker,
    new_take,
    parse_seed,
    seed_picker,
    track_picker,
    wav_for,
)
from musiclab.ui_eval import metrics_panel

st.session_state.setdefault("takes", [])


def continue_from(take: dict) -> None:
    """Make a take the seed (runs before the next script run, so widgets may be set)."""
    st.session_state["seed_bytes"] = take["midi"]
    st.session_state["seed_label"] = take["label"]
    st.session_state["compose_src"] = "Current seed"
    st.session_state["seed_seconds"] = float(min(round(load_midi(take["midi"]).get_end_time(), 1), 120.0))


st.title("Compose")

left, right = st.columns([1, 2])
with left:
    name = model_picker("compose_model")
    if name:
        card = cached_model(name).card
        with st.expander(f"About {name}"):
            st.write(card.get("paper", ""))
            m = card.get("metrics", {})
            st.caption(
                f"{card.get('params', 0):,} params · valid NLL {m.get('valid_nll')} vs {m.get('baseline')} "
                f"{m.get('baseline_nll')} · data: {card.get('data', '?')}"
            )
    data, label = seed_picker("compose")
    seed = parse_seed(data, label) if data else None
    if seed is not None:
        tracks = track_picker(seed, "compose")
        dur = max(1.0, round(seed.get_end_time(), 1))
        seed_s = st.slider("Seed length (s)", 1.0, min(dur, 120.0), min(10.0, dur), 0.5, key="seed_seconds")
        new_s = st.slider("Continue for (s)", 5, 120, 20, 5, key="seconds")
        with st.expander("Sampling", expanded=True):
            temp = st.slider("Temperature", 0.0, 2.0, 1.0, 0.05, key="temperature", help="0 = greedy")
            top_k = st.slider("Top-k (0 = off)", 0, 200, 0, key="top_k")
            top_p = st.slider("Top-p", 0.05, 1.0, 0.95, 0.01, key="top_p")
            min_p = st.slider("Min-p (0 = off)", 0.0, 0.5, 0.0, 0.01, key="min_p")
            rep = st.slider("Repetition penalty", 1.0, 3.0, 1.1, 0.05, key="repetition_penalty")
            key_lock = st.checkbox("Key lock (stay in the seed's key)", key="key_lock")
            n_var = st.slider("Variations", 1, 4, 1, key="variations")
            rseed = st.number_input("Random seed (0 = new each time)", 0, 2**31 - 1, 0, key="random_seed")
        go = st.button("Generate", type="primary", disabled=name is None, key="generate")
        if go and name:
            prog = Progress()
            try:
                takes = generate(
                    cached_model(name),
                    seed,
                    seed_seconds=seed_s,
                    seconds=float(new_s),
                    temperature=temp,
                    top_k=top_k,
                    top_p=top_p,
                    min_p=min_p,
                    repetition_penalty=rep,
                    key_lock=key_lock,
                    variations=n_var,
                    random_seed=int(rseed) or None,
                    tracks=tracks,
                    progress=prog,
                )
            except (MidiError, SettingsError) as e:
                st.error(f"Could not generate: {e}")
            else:
                for pm in takes:
                    n = len(st.session_state["takes"]) + 1
                    st.session_state["takes"].append(new_take(pm, seed_s, f"Take {n} · {name}"))
                info = takes[0].musiclab_info
                st.success(
                    f"{len(takes)} take(s): {info['tokens']} tokens in {info['compute_seconds']:.2f} s "
                    f"({info['tokens'] / max(info['compute_seconds'], 1e-6):,.0f} tokens/s)"
                )

with right:
    if not st.session_state["takes"]:
        st.info("Your takes appear here. Pick a seed and press **Generate**.")
    for take in reversed(st.session_state["takes"]):
        with st.container(border=True):
            info = take["info"]
            st.markdown(f"**{take['label']}** · {take['made']} · random seed {info.get('random_seed')}")
            pm = load_midi(take["midi"])
            st.plotly_chart(pianoroll_figure(pm, seed_end=take["seed_end"]), key=f"roll_{take['id']}")
            metrics_panel(pm, take["seed_end"], info.get("seconds"))
            ogg, notice, _ = audio_for(take["midi"])
            if notice:
                st.warning(notice)
            st.audio(ogg, format="audio/ogg")
            c1, c2, c3 = st.columns(3)
            c1.download_button(
                "MIDI",
                take["midi"],
                f"musiclab-{take['id']}.mid",
                "audio/midi",
                key=f"dl_mid_{take['id']}",
                on_click="ignore",
            )
            c2.download_button(
                "WAV",
                lambda t=take: wav_for(t["midi"]),
                f"musiclab-{take['id']}.wav",
                "audio/wav",
                key=f"dl_wav_{take['id']}",
                on_click="ignore",
            )
            c3.button("Continue from this take", key=f"cont_{take['id']}", on_click=continue_from, args=(take,))
