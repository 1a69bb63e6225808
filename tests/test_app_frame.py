"""The one private Streamlit API musiclab touches (app/common.py ensure_frame): fails when Streamlit changes it."""

from __future__ import annotations

import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pages_folder_patch_matches_this_streamlit():
    """Streamlit 1.67 has no supported switch: a pages/ folder beside app.py turns on the legacy
    multipage mode until st.navigation sets this flag False. ensure_frame sets it the same way."""
    import streamlit.commands.navigation as nav
    from streamlit.runtime.pages_manager import PagesManager

    assert "uses_pages_directory" in vars(PagesManager)
    saved = PagesManager.uses_pages_directory
    try:
        PagesManager.uses_pages_directory = None
        PagesManager(str(ROOT / "app.py"))
        assert PagesManager.uses_pages_directory is True  # legacy mode, because of pages/
        assert "PagesManager.uses_pages_directory = False" in inspect.getsource(nav.navigation)
    finally:
        PagesManager.uses_pages_directory = saved
