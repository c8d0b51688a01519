"""Build the embedded demo dataset: rendered music21-corpus pieces with ground truth.

Everything comes from pip-installable packages and works offline:

* scores: the ``music21`` corpus (shipped inside the music21 wheel);
* timbres: the General MIDI soundfont ``TimGM6mb.sf2`` shipped inside ``pretty_midi``;
* synthesis: ``tinysoundfont`` (``pip install --no-deps tinysoundfont``; its ``pyaudio``
  dependency is only needed for live playback).

Each *piece* is rendered in several *versions* (GM instrument(s), tempo, transposition, excerpt
start, added fixed-seed noise, synthetic reverb).  ``refs/`` holds one or two versions of every
*query* piece plus many *distractor* pieces; ``targets/`` holds other versions of the query pieces.
``ground_truth.csv`` lists, for every target, the reference(s) of the same piece (relevance 1).

Modules: :mod:`.spec` (which pieces, which versions), :mod:`.render` (score -> MIDI -> audio,
deformations, worker processes), :mod:`.build` (the atomic, deterministic build and its reuse);
``README.txt`` is the template of the set's README.
"""

from __future__ import annotations

from .build import DemoSet, build_demo, default_demo_dir, is_complete
from .spec import BUILDER_VERSION, demo_spec

__all__ = [
    "BUILDER_VERSION",
    "DemoSet",
    "build_demo",
    "default_demo_dir",
    "demo_spec",
    "is_complete",
]
