"""The Streamlit app's building blocks (pages/ at the repository root stay thin and call these)."""
