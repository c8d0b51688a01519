"""perf/robustness_table.py: the table and the issue-17 verdicts it prints from a suite's hit@1 values."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("robustness_table", ROOT / "perf" / "robustness_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def values(all_, **per):
    return {"all": all_, **{name.replace("tempo_0_9", "tempo_0.9"): v for name, v in per.items()}}


def test_the_table_has_a_row_per_deformation_in_the_scenario_order_and_the_overall_last(table):
    encoders = ["chroma", "chroma-keyinv"]
    data = {
        "chroma": values(0.5, identity=0.9, pitch_up_1=0.1, tempo_0_9=0.8),
        "chroma-keyinv": values(0.9, identity=0.95, pitch_up_1=0.9, tempo_0_9=0.7),
    }
    lines = table.render(encoders, data).splitlines()
    assert lines[0] == "| deformation | chroma | chroma-keyinv |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| identity", "| pitch_up_1", "| tempo_0.9", "| **all**"]
    assert lines[-1] == "| **all** | 0.500 | 0.900 |"


def test_the_verdicts_name_the_best_encoder_its_weakest_listed_deformation_and_each_invariant_loss(table):
    data = {
        "chroma": values(0.5, identity=0.9, excerpt=0.9, pitch_up_1=0.1, tempo_0_9=0.8),
        "chroma-keyinv": values(0.92, identity=0.95, excerpt=0.85, pitch_up_1=0.9, tempo_0_9=0.7),
    }
    lines = table.verdicts(["chroma", "chroma-keyinv"], data)
    assert lines[0].startswith("(a) best encoder chroma-keyinv") and lines[0].endswith(": met")
    assert "lowest listed deformation tempo_0.9 0.700" in lines[1] and "NOT met (tempo_0.9 0.700)" in lines[1]
    # pitch rows are left out of (c): the worst pitch-preserving loss is tempo_0.9's 0.1
    assert "largest loss on a pitch-preserving deformation tempo_0.9 +0.100" in lines[2] and "NOT met" in lines[2]
