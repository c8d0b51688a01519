"""``example_loudness``: how far apart the loudness (RMS level, dBFS) of a target and its retrieved reference is.

A pair metric plug-in: a subclass of musicbench's ``PairMetric`` that turns each file into features once
(``file_features``) and scores pairs from them (``pair_scores``), declaring each number's direction (``measures``).
Opt-in (``in_auto = False``): it runs when named, ``--metrics melody,example_loudness``.
"""

from __future__ import annotations

import numpy as np

from metrics.base import Measure, PairMetric

FLOOR_DB = -120.0  # digital silence


class LoudnessMatch(PairMetric):
    name = "example_loudness"
    sample_rate = 16000
    columns = ("loudness_diff_db",)
    file_value_names = ("loudness_db",)
    in_auto = False
    parallel_files = True
    feature_shape = (1,)
    measures = (
        Measure("loudness_diff_db", higher_is_better=False, description="|target - reference| RMS level, dB"),
        Measure("loudness_db", higher_is_better=None, description="a file's RMS level, dBFS"),
    )

    def file_features(self, audio: np.ndarray) -> np.ndarray:
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
        return np.array([max(FLOOR_DB, 20.0 * np.log10(rms)) if rms > 0 else FLOOR_DB])

    def pair_scores(self, target: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        return {"loudness_diff_db": float(abs(target[0] - reference[0]))}

    def file_values(self, features: np.ndarray) -> dict[str, float]:
        return {"loudness_db": float(features[0])}
