"""Fixtures the e2e modules share (the Serve app itself is tests/conftest.py's)."""

from __future__ import annotations

import pytest

from tests.audio import FOX, PLATFORM, speak


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """The two spoken test texts as WAV files (espeak-ng), made once per session."""
    folder = tmp_path_factory.mktemp("speech")
    return {"fox": speak(FOX, folder / "fox.wav"), "platform": speak(PLATFORM, folder / "plat.wav")}
