"""The package keeps its layers (design.md) and has no import circle: every ``import`` of an
``ohemcli`` module counts, whether at module level, under ``TYPE_CHECKING`` or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ohemcli"


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path, name: str) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports (``from a import b`` counts ``a.b`` if a module)."""
    files = {_module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    anchor = _package_of(path, name).split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]  # fmt: skip
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt, path)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_the_checker_finds_a_circle_and_a_clean_graph():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_checker_reads_every_kind_of_import(tmp_path):
    pkg = tmp_path / "ohemcli"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "__init__.py").write_text("")
    (pkg / "engine" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ohemcli.engine.b import X\n"
    )
    (pkg / "engine" / "b.py").write_text("def f():\n    from . import a\n")
    graph = import_graph(pkg)
    assert graph["ohemcli.engine.a"] == {"ohemcli.engine.b"}
    assert graph["ohemcli.engine.b"] == {"ohemcli.engine.a"}
    assert find_cycle(graph) == ["ohemcli.engine.a", "ohemcli.engine.b", "ohemcli.engine.a"]


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert "ohemcli.engine.train" in graph and graph["ohemcli.engine.train"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_report_never_reaches_the_training_loop():
    """report/ turns finished run folders into tables; nothing it imports, even indirectly,
    may pull in the trainer or the compare orchestration."""
    graph = import_graph()
    seen, todo = set(), [m for m in graph if m.startswith("ohemcli.report")]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, ())
    assert len(seen) > 5
    assert not {"ohemcli.engine.train", "ohemcli.launch.compare", "ohemcli.launch.submit"} & seen


# The layers of design.md, bottom first. A module may import from its own unit (the same top-level
# module or subpackage) or from a unit of a strictly lower layer; units of one layer never import
# each other (data and model are siblings). ``ohemcli`` itself (its version) is the floor.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("ohemcli", "errors", "config_rules", "progress"),
    ("fileio",),
    ("config",),
    ("presets", "boxes", "device"),
    ("data", "model"),
    ("samplers",),
    ("runs",),
    ("evaluation",),
    ("engine",),
    ("launch",),
    ("report",),
    ("api",),
    ("cli",),
    ("__main__",),
)
LAYER_OF = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """``ohemcli.data.voc`` -> ``data``; ``ohemcli`` -> ``ohemcli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that does not go strictly down the layers, as ``a -> b`` lines."""
    bad = []
    for module, targets in sorted(graph.items()):
        here = unit_of(module)
        for target in sorted(targets):
            there = unit_of(target)
            if there != here and LAYER_OF[there] >= LAYER_OF[here]:
                bad.append(f"{module} -> {target}")
    return bad


def test_the_layer_checker_refuses_upward_and_sideways_imports():
    graph = {
        "ohemcli.data.voc": {"ohemcli.errors", "ohemcli.data.checks"},
        "ohemcli.data.checks": set(),
        "ohemcli.errors": set(),
        "ohemcli.model.fast_rcnn": {"ohemcli.data.voc"},  # sideways
        "ohemcli.runs.paths": {"ohemcli.engine.step"},  # upward
        "ohemcli.engine.step": set(),
    }
    assert upward_imports(graph) == [
        "ohemcli.model.fast_rcnn -> ohemcli.data.voc",
        "ohemcli.runs.paths -> ohemcli.engine.step",
    ]


def test_every_unit_has_a_layer():
    assert {unit_of(m) for m in import_graph()} <= set(LAYER_OF)


def test_no_module_imports_from_a_layer_above_it():
    bad = upward_imports(import_graph())
    assert not bad, "\n".join(bad)


def test_ohem_report_loads_neither_torchvision_nor_opencv(tmp_path):
    """``ohem report`` turns run files into tables: the whole command, CLI included, runs without
    torchvision or cv2 (each takes seconds to import)."""
    import subprocess
    import sys

    from tests.report.fake_runs import fake_run

    fake_run(tmp_path / "cmp" / "runs", "fixed", 1, 0.5)
    fake_run(tmp_path / "cmp" / "runs", "ohem", 1, 0.6)
    code = (
        "import sys\n"
        "from ohemcli.cli import app\n"
        f"sys.argv = ['ohem', 'report', {str(tmp_path / 'cmp')!r}, '--format', 'json']\n"
        "try:\n    app()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(m for m in ('torchvision', 'cv2') if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
