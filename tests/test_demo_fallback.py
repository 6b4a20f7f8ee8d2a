"""fwrd demo on a machine whose model's int8 graph fails its gate: a note, then the rest of the demo on fp32."""

from __future__ import annotations

import pytest

from fwrd import demo
from fwrd.errors import ExportGateFailed


def _record(monkeypatch, fail_int8: bool, fail_fp32: bool = False) -> list[tuple[str, list[str]]]:
    calls: list[tuple[str, list[str]]] = []

    def run_step(step, args, echo=print):
        argv = [str(a) for a in args]
        calls.append((step, argv))
        precision = argv[argv.index("--precision") + 1] if step == "export" else None
        if (precision == "int8" and fail_int8) or (precision == "fp32" and fail_fp32):
            raise ExportGateFailed(f"{precision} export failed its accuracy gate: the call flipped on 5 of 100 tiles")

    monkeypatch.setattr(demo, "run_step", run_step)
    return calls


def test_a_failed_int8_gate_goes_on_with_fp32_and_says_so(monkeypatch, tmp_path):
    calls, lines = _record(monkeypatch, fail_int8=True), []
    demo.run_demo(tmp_path, echo=lines.append)
    assert [step for step, _ in calls] == ["synth", "patches", "train", "export", "export", "run", "eval"]
    (_, int8), (_, fp32) = calls[3], calls[4]
    assert int8[int8.index("--precision") + 1] == "int8" and fp32[fp32.index("--precision") + 1] == "fp32"
    assert str(tmp_path / "rd_fp32.onnx") in fp32 and str(tmp_path / "rd_fp32.onnx") in calls[5][1]
    assert lines[0].startswith("note: int8 export failed its accuracy gate") and "fp32 graph" in lines[1]


def test_a_passing_int8_gate_keeps_int8_and_an_fp32_failure_still_stops_the_demo(monkeypatch, tmp_path):
    calls = _record(monkeypatch, fail_int8=False)
    demo.run_demo(tmp_path, echo=lambda line: None)
    assert [step for step, _ in calls].count("export") == 1 and str(tmp_path / "rd_int8.onnx") in calls[4][1]
    _record(monkeypatch, fail_int8=True, fail_fp32=True)
    with pytest.raises(ExportGateFailed, match="fp32"):
        demo.run_demo(tmp_path, echo=lambda line: None)
