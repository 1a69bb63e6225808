"""musiclab — the navigation frame shared by every page (run: streamlit run app.py)."""

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="musiclab", page_icon="🎹", layout="wide")
pages = [
    st.Page(HERE / "pages" / "compose.py", title="Compose", icon=":material/music_note:", default=True),
    st.Page(HERE / "pages" / "edit.py", title="Edit", icon=":material/edit_note:"),
    st.Page(HERE / "pages" / "ab.py", title="A/B listening", icon=":material/headphones:"),
    st.Page(HERE / "pages" / "evaluate.py", title="Evaluate", icon=":material/bar_chart:"),
    st.Page(HERE / "pages" / "models.py", title="Models", icon=":material/neurology:"),
]
st.navigation(pages).run()
