"""Placeholder: filled by its issue."""

import streamlit as st

st.title("ab")
st.info("Coming soon.")
