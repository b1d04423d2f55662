"""Cutting long recordings into utterance-sized pieces at pauses (energy-based voice activity detection).

A model trained on 1-6 s utterances sees a whole minute as one sequence it was never trained on;
cutting at silences gives it pieces like those it knows. Windows of 20 ms whose energy is close to the
recording's noise floor are silence; a pause of at least `min_pause` seconds is a cut point. A stretch
with no pause longer than `max_seconds` is cut into equal windows.
"""
from __future__ import annotations

import math

import numpy as np


def window_energy_db(waveform, sample_rate: int, energy_window_seconds: float = 0.02) -> np.ndarray:
    """Energy in dB of each window of a (samples,) waveform (a numpy array or a CPU tensor)."""
    waveform = np.asarray(waveform, dtype=np.float32)
    hop = max(1, int(sample_rate * energy_window_seconds))
    n = waveform.size // hop
    frames = waveform[: n * hop].reshape(n, hop)
    return 10 * np.log10((frames ** 2).mean(axis=1) + 1e-10)


def speech_segments(waveform, sample_rate: int, max_seconds: float = 15.0, min_pause: float = 0.3,
                    energy_window_seconds: float = 0.02) -> list[tuple[int, int]]:
    """(start_sample, end_sample) of each piece with speech, in order. Short audio comes back whole."""
    total = int(np.asarray(waveform).size)
    if total <= max_seconds * sample_rate:
        return [(0, total)]
    hop = max(1, int(sample_rate * energy_window_seconds))
    db = window_energy_db(waveform, sample_rate, energy_window_seconds)
    floor, peak = np.quantile(db, 0.1), np.quantile(db, 0.95)
    speech = db > floor + 0.25 * (peak - floor)
    # speech runs, joined across pauses shorter than min_pause
    runs, start, gap = [], None, 0
    min_gap = max(1, round(min_pause / energy_window_seconds))
    for i, is_speech in enumerate(speech.tolist() + [False] * min_gap):
        if is_speech:
            if start is None:
                start = i
            gap = 0
        elif start is not None:
            gap += 1
            if gap >= min_gap:
                runs.append((start, i - gap + 1))
                start, gap = None, 0
    pad = round(0.1 / energy_window_seconds)  # keep 100 ms around each run: onsets and releases are quiet
    pieces = []
    for a, b in runs:
        a, b = max(0, (a - pad) * hop), min(total, (b + pad) * hop)
        count = math.ceil((b - a) / (max_seconds * sample_rate))
        edges = [a + round(k * (b - a) / count) for k in range(count + 1)]
        pieces += list(zip(edges[:-1], edges[1:]))
    return pieces
