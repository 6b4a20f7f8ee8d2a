"""The house's arrows point down: no module imports from a floor above its own.

Floors, bottom to top (issue 23): errors/atomic/digest/safe_text -> slide/config -> model -> runtime/evaluation ->
benchmark/training/export -> cli (with fwrd.demo, which runs the cli's commands in order). A module may
import from its own floor (sideways) or any floor below. Imports are read from the source (top level,
inside functions, and `importlib.import_module("fwrd....")` with a literal name), so a lazy import that
runs back up is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fwrd

ROOT = Path(fwrd.__file__).parent
FLOORS = {
    "errors": 0, "atomic": 0, "digest": 0, "safe_text": 0, "__init__": 0,
    "slide": 1, "config": 1,
    "model": 2,
    "runtime": 3, "evaluation": 3,
    "benchmark": 4, "training": 4, "export": 4,
    "cli": 5, "demo": 5,
}


def _room(module: str) -> str:
    """`fwrd.runtime.backends.torch` -> `runtime`; `fwrd` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "fwrd":
                found.extend((node.lineno, f"fwrd.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args
              and isinstance(node.args[0], (ast.Constant, ast.JoinedStr))):
            arg = node.args[0]
            text = arg.value if isinstance(arg, ast.Constant) else "".join(
                v.value for v in arg.values if isinstance(v, ast.Constant))
            if isinstance(text, str):
                found.append((node.lineno, text.rstrip(".")))
    return [(line, name) for line, name in found if name == "fwrd" or name.startswith("fwrd.")]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def test_every_room_has_a_floor():
    rooms = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert rooms <= set(FLOORS), sorted(rooms - set(FLOORS))


def test_no_import_runs_back_up():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        floor = FLOORS[_room(module)]
        for line, target in _imports(path):
            if FLOORS.get(_room(target), 0) > floor:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} ({_room(module)}, floor {floor}) imports "
                              f"{target} (floor {FLOORS[_room(target)]})")
    assert not upward, "\n".join(upward)


def test_the_reader_catches_what_it_must(tmp_path):
    """The import reader itself: a lazy import and an importlib call running up are both seen."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from fwrd.cli.run import main\n    import importlib\n"
                      "    importlib.import_module('fwrd.export.pipeline')\n"
                      "    importlib.import_module(f'fwrd.cli.{name}')\nfrom fwrd import atomic\n")
    assert sorted(t for _, t in _imports(source)) == [
        "fwrd", "fwrd.atomic", "fwrd.cli", "fwrd.cli.run", "fwrd.export.pipeline"]
