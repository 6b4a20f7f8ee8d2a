"""fwrd.runtime and fwrd.slide never import torch: `fwrd-run` works with torch made unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_TORCH = "import sys; sys.modules['torch'] = None  # `import torch` now raises ImportError\n"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_fwrd_run_without_torch(synthetic_cohort, standin_model, tmp_path):
    slide = synthetic_cohort.slides[0].path
    done = _python(f"""
        from fwrd.cli.run import main
        try:
            main([{str(slide)!r}, "--model", {str(standin_model)!r}, "--out", {str(tmp_path)!r},
                  "--quiet", "--threads", "1"])
        except SystemExit as exit:
            assert not exit.code, exit.code
        assert sys.modules.get("torch") is None
    """)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / slide.stem / "summary.json").is_file()


def test_every_runtime_and_slide_module_imports_without_torch():
    done = _python("""
        import importlib, pkgutil
        import fwrd.runtime, fwrd.slide
        names = []
        for package in (fwrd.runtime, fwrd.slide):
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(info.name)
                names.append(info.name)
        assert "fwrd.runtime.slide_job" in names and "fwrd.runtime.backends.onnxruntime" in names
        print(len(names))
    """)
    assert done.returncode == 0, done.stderr


# torch not installed at all (scipy.stats trips over a `None` in sys.modules, an uninstalled torch it handles)
NO_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, _NoTorch())
"""


def test_engine_builder_and_its_gate_import_without_torch(tmp_path):
    """`fwrd-export rd.onnx --engine rd.plan` runs on a GPU box that has TensorRT but no torch."""
    code = textwrap.dedent(f"""
        import fwrd.export.tensorrt_build, fwrd.export.gate, fwrd.export.tensorrt_rules, fwrd.export.pipeline
        from fwrd.cli.export import main
        try:
            main([{str(tmp_path / "rd.onnx")!r}, "--engine", {str(tmp_path / "rd.plan")!r}])
        except SystemExit as exit:
            assert exit.code, "no TensorRT here: must fail"
        assert "torch" not in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Error: " in done.stderr
