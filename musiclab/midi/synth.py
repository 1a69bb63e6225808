"""Audio: MIDI -> samples with FluidSynth (midi2audio's command line) and a real GM SoundFont.

Without the ``fluidsynth`` program, or with a missing/corrupt SoundFont, audio falls back
to pretty_midi's sine synthesizer and a notice says so: it still plays. Samples are mono
float32 in [-1, 1], peak-normalised to -1 dBFS, at ``SAMPLE_RATE`` Hz.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf

from ..settings import current

SAMPLE_RATE = 44100
ENCODE_BLOCK = 1 << 16  # samples per write when encoding (see encode_audio)
# load only the samples a file plays, not the whole 141 MB SoundFont: quicker renders, the same samples
FLUIDSYNTH_OPTIONS = ("-o", "synth.dynamic-sample-loading=1")
FLUIDSYNTH_TIMEOUT_S = 120  # one render; a 4-minute take takes ~5 s
_CANDIDATES = [
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/MuseScore_General.sf2",
    str(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"),  # ships with pretty_midi
]


def find_soundfont(soundfont: str | os.PathLike | None = None) -> str | None:
    """The SoundFont to use: the argument, $MUSICLAB_SOUNDFONT, Debian's GM fonts, pretty_midi's."""
    if soundfont:
        return str(soundfont)
    env = current().soundfont
    if env:
        return env
    return next((c for c in _CANDIDATES if os.path.isfile(c)), None)


def synth_status(soundfont: str | None = None) -> tuple[bool, str]:
    """(True, what will be used) or (False, why audio falls back to the sine synth)."""
    if shutil.which("fluidsynth") is None:
        return False, "FluidSynth is not installed (apt-get install fluidsynth): audio uses a plain sine synth"
    sf2 = find_soundfont(soundfont)
    if sf2 is None or not os.path.isfile(sf2):
        return False, f"SoundFont {sf2!r} not found: audio uses a plain sine synth"
    if not _looks_like_soundfont(sf2):
        return (
            False,
            f"SoundFont {sf2!r} is not a valid SoundFont (corrupt or truncated?): audio uses a plain sine synth",
        )
    return True, f"FluidSynth with {Path(sf2).name}"


def _looks_like_soundfont(path: str) -> bool:
    """A RIFF 'sfbk' file (SF2/SF3) whose RIFF size matches the file: catches junk and truncation."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
        size = os.path.getsize(path)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"sfbk" and int.from_bytes(head[4:8], "little") + 8 <= size


def _normalise(audio: np.ndarray, peak_db: float = -1.0) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = audio * (10 ** (peak_db / 20) / peak)
    return audio.astype(np.float32)


def _fluidsynth(pm: pretty_midi.PrettyMIDI, sf2: str, sr: int) -> np.ndarray | None:
    """Render with the ``fluidsynth`` program (midi2audio's command line); None if it failed.

    Its output is captured, not printed: process-wide stdout/stderr stay untouched, so
    sessions may render at the same time. FluidSynth falls back to the system's default
    SoundFont when ``sf2`` cannot be loaded, and says so only in its output: that is a failure here.
    """
    with tempfile.TemporaryDirectory(prefix="musiclab-") as d:
        mid, wav = os.path.join(d, "in.mid"), os.path.join(d, "out.wav")
        pm.write(mid)
        try:
            run = subprocess.run(
                ["fluidsynth", "-ni", *FLUIDSYNTH_OPTIONS, sf2, mid, "-F", wav, "-r", str(sr)],
                capture_output=True, text=True, errors="replace", timeout=FLUIDSYNTH_TIMEOUT_S,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        said = (run.stdout + run.stderr).lower()
        if run.returncode != 0 or "failed to load" in said or "not a soundfont" in said:
            return None
        if not os.path.exists(wav) or os.path.getsize(wav) < 100:
            return None
        audio, _ = sf.read(wav, dtype="float32")
        return audio


def render_audio_with_notice(
    pm: pretty_midi.PrettyMIDI, soundfont: str | None = None, sr: int = SAMPLE_RATE
) -> tuple[np.ndarray, int, str | None]:
    """(samples, sample rate, notice or None). The notice explains a fallback."""
    ok, why = synth_status(soundfont)
    if ok:
        audio = _fluidsynth(pm, find_soundfont(soundfont), sr)
        if audio is not None and np.abs(audio).max() > 1e-4:
            return _normalise(audio), sr, None
        why = f"FluidSynth could not render with SoundFont {find_soundfont(soundfont)!r} (missing or corrupt?): audio uses a plain sine synth"
    return _normalise(pm.synthesize(fs=sr)), sr, why


def render_audio(pm: pretty_midi.PrettyMIDI, soundfont: str | None = None) -> tuple[np.ndarray, int]:
    audio, sr, _ = render_audio_with_notice(pm, soundfont)
    return audio, sr


def encode_audio(audio: np.ndarray, sr: int, fmt: str = "OGG") -> bytes:
    """Compress for the browser (OGG Vorbis, ~10x smaller than WAV) or WAV for download."""
    buf = io.BytesIO()
    audio = np.asarray(audio, dtype=np.float32)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    # in blocks: libsndfile 1.2.2's Vorbis encoder crashes the process (SIGSEGV) when one write
    # holds 2**21 samples or more (47.5 s at 44.1 kHz); block writes encode any length
    with sf.SoundFile(buf, "w", sr, channels, format=fmt, subtype="VORBIS" if fmt == "OGG" else "PCM_16") as f:
        for i in range(0, len(audio), ENCODE_BLOCK):
            f.write(audio[i : i + ENCODE_BLOCK])
    return buf.getvalue()
