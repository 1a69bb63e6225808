"""Placeholder: filled by its issue."""

import streamlit as st

st.title("evaluate")
st.info("Coming soon.")
