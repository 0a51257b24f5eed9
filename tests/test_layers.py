"""The package's import graph (issue 16): no circle, and no import inside a function that only
dodges one; the grid module imports without torch (the Snakefile is re-read on every cluster
node); no top-level package ``baselines`` is installed."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trpo_bench"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").exists() or (
        PACKAGE.parent / rel / "__init__.py"
    ).exists()


MODULES = sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """The trpo_bench modules ``path`` imports at module level, and inside functions."""
    tree = ast.parse(path.read_text())
    inner_nodes = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for sub in ast.walk(node)
    }
    top, inner = set(), set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "trpo_bench" or node.module.startswith("trpo_bench."):
                # from trpo_bench.methods import cem, ppo: the submodules; else the module
                subs = [f"{node.module}.{a.name}" for a in node.names]
                names = [m for m in subs if _is_module(m)] or [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("trpo_bench.")]
        (inner if id(node) in inner_nodes else top).update(names)
    return top, inner


def _graph(with_inner: bool) -> dict[str, set[str]]:
    graph = {}
    for path in MODULES:
        top, inner = _imports(path)
        graph[_module(path)] = top | inner if with_inner else top
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_module_level_import_graph_has_no_circle():
    assert _cycle(_graph(with_inner=False)) is None


def _loads_torch(module: str) -> bool:
    code = f"import sys; import {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "True"


def test_no_import_inside_a_function_only_dodges_a_circle():
    """An import left inside a function either closes no circle (it could move to the top), or
    keeps torch out of a module that must import without it (the grid, read by the Snakefile on
    every cluster node; the status and estimate readers): the importing module loads no torch
    and the imported one does. No other reason is accepted."""
    top = _graph(with_inner=False)
    dodging = []
    for path in MODULES:
        module = _module(path)
        for imported in sorted(_imports(path)[1] - top[module]):
            graph = {m: set(deps) for m, deps in top.items()}
            graph[module].add(imported)
            if _cycle(graph) is not None:
                dodging.append((module, imported))
    for module, imported in dodging:
        assert not _loads_torch(module) and _loads_torch(imported), (
            f"{module} imports {imported} inside a function only to dodge a circle"
        )


# The layers, bottom up: a module imports only from its own layer and those below it.
LAYERS = [
    {"trpo_bench.config", "trpo_bench.variants", "trpo_bench.plugins"},
    {
        "trpo_bench.run.files",
        "trpo_bench.run.pace",
        "trpo_bench.run.timelimit",
        "trpo_bench.run.provenance",
        "trpo_bench.run.identity",
        "trpo_bench.run.atomic",
        "trpo_bench.run.messages",
        "trpo_bench.run.progress",
        "trpo_bench.run.folder",
        "trpo_bench.run.mlflow_log",
    },
    {"trpo_bench.core"},
    {"trpo_bench.envs"},
    {"trpo_bench.api", "trpo_bench.sampling"},
    # what a run owns and writes: the derivative-free methods' own loops use it too
    {
        "trpo_bench.run.checkpoint",
        "trpo_bench.run.learner",
        "trpo_bench.run.evaluation",
        "trpo_bench.run.recorder",
    },
    {"trpo_bench.methods"},
    # the training loop, and checks of the pipeline that use what a run owns
    {"trpo_bench.resolve", "trpo_bench.run.trainer", "trpo_bench.run", "trpo_bench.diagnostics"},
    {
        "trpo_bench.analysis",
        "trpo_bench.grid",
        "trpo_bench.committed",
        "trpo_bench.cli",
        "trpo_bench.__main__",
    },
]


def _layer(module: str) -> int:
    # the most specific entry wins: trpo_bench.run.recorder before trpo_bench.run
    best = max(
        (
            (len(m), i)
            for i, layer in enumerate(LAYERS)
            for m in layer
            if module == m or module.startswith(m + ".")
        ),
        default=None,
    )
    if best is not None:
        return best[1]
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py")


def test_imports_go_down_the_layers():
    """The config < the run folder's names < core (the paper's math) < envs < the method API and
    samplers < what a run owns and writes < methods < the training loop < analysis and the front
    ends; nothing below imports from above."""
    upward = [
        (module, imported)
        for module, deps in _graph(with_inner=True).items()
        if module != "trpo_bench"
        for imported in deps
        if imported != "trpo_bench" and _layer(imported) > _layer(module)
    ]
    assert upward == []


def test_the_schema_module_imports_no_other_trpo_bench_module():
    top, inner = _imports(PACKAGE / "config.py")
    assert top | inner == set()


@pytest.mark.parametrize(
    "module",
    [
        "trpo_bench.grid",
        "trpo_bench.committed",
        "trpo_bench.config",
        "trpo_bench.variants",
        "trpo_bench.analysis.status",
        "trpo_bench.run.folder",
        "trpo_bench.run.progress",
        "trpo_bench.run.mlflow_log",
    ],
)
def test_light_modules_import_without_torch(module):
    """What the Snakefile, `trpo-bench status` and the workflow's MLflow rules import loads
    neither torch nor MLflow (seconds per process each)."""
    code = (
        f"import sys; import {module}; "
        "assert 'torch' not in sys.modules, 'torch loaded'; "
        "assert 'mlflow' not in sys.modules, 'mlflow loaded'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_no_top_level_package_named_baselines_is_installed():
    """pyproject's packages.find installs trpo_bench only; baselines/ holds scripts."""
    code = (
        "import importlib.util; "
        "print(importlib.util.find_spec('baselines') is None, "
        "importlib.util.find_spec('trpo_bench.methods.cem') is not None)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.stdout.split() == ["True", "True"], result.stderr
