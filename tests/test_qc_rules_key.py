"""A --resume after QC's judging rules change redoes the calls: the rules are in the finished outputs' key,
not in the journal's (which holds only the tiles' QC features and scores, still good)."""

from __future__ import annotations

from fwrd.config import QCThresholds
from fwrd.runtime import settings as settings_module
from fwrd.runtime.settings import RunSettings


def test_judging_rules_are_in_the_output_key_only(monkeypatch):
    run = RunSettings(progress=False, qc_thresholds=QCThresholds())
    before = (run.output_key("m" * 64), run.score_key("m" * 64))
    monkeypatch.setattr(settings_module, "JUDGING_RULES", "some other rules")
    after = (run.output_key("m" * 64), run.score_key("m" * 64))
    assert after[0] != before[0] and after[1] == before[1]
    off = RunSettings(progress=False, qc=False)
    key = off.output_key("m" * 64)
    monkeypatch.setattr(settings_module, "JUDGING_RULES", "yet other rules")
    assert off.output_key("m" * 64) == key  # without QC the rules decide nothing
