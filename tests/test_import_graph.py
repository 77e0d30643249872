"""The package's import graph, lazy (function-level) imports included: no cycles, and no import
going back up the layers (models/data/dsp/metrics below module, module below tasks, runs.py on
utils/errors only). Built from the source with `ast`, so nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGE = "audio_superres"
SRC = REPO / "src"

# (importer prefix, forbidden import prefixes): a lower layer never reaches a higher one
FORBIDDEN = [
    (f"{PACKAGE}.{low}", (f"{PACKAGE}.module", f"{PACKAGE}.tasks", f"{PACKAGE}.bench"))
    for low in ("models", "data", "dsp", "metrics")
] + [(f"{PACKAGE}.module", (f"{PACKAGE}.tasks", f"{PACKAGE}.bench"))]
# the inference object and the shared task settings: below every task, and (the resolver) without
# the LightningModule, so that using a model needs no Lightning (issue 21)
FORBIDDEN += [
    (f"{PACKAGE}.resolver", (f"{PACKAGE}.module", f"{PACKAGE}.tasks", f"{PACKAGE}.bench")),
    (f"{PACKAGE}.settings", (f"{PACKAGE}.module", f"{PACKAGE}.tasks", f"{PACKAGE}.bench")),
]
# runs.py: run bookkeeping shared by every task and tool, built on these alone
RUNS_MAY_IMPORT = {PACKAGE, f"{PACKAGE}.utils", f"{PACKAGE}.errors"}


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, packages named without `.__init__`."""
    out = {}
    for f in sorted((src / package).rglob("*.py")):
        name = ".".join(f.relative_to(src).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """Every module's imports of the package's own modules, module-level and lazy alike.

    `from pkg.sub import name` counts as an import of `pkg.sub.name` when that is a module, else
    of `pkg.sub`. A module's own ancestors (imported as a side effect) are left out, as Python
    runs them before the module anyway."""
    mods = module_files(src, package)

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in mods:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if is_package else name.split(".")[:-1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
            for target in targets:
                if target != package and not target.startswith(package + "."):
                    continue
                found = owner(target)
                if found and found != name and not name.startswith(found + "."):
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """`importer -> imported` for every import that goes back up the layers."""
    bad = []
    for importer, imported in sorted(graph.items()):
        for target in sorted(imported):
            for prefix, forbidden in FORBIDDEN:
                if (importer == prefix or importer.startswith(prefix + ".")) and any(
                    target == f or target.startswith(f + ".") for f in forbidden
                ):
                    bad.append(f"{importer} -> {target}")
            if importer == f"{PACKAGE}.runs" and target not in RUNS_MAY_IMPORT:
                bad.append(f"{importer} -> {target}")
    return bad


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 30 and f"{PACKAGE}.tasks.train" in graph
    assert cycles(graph) == []


def test_no_import_goes_back_up_the_layers() -> None:
    assert layer_violations(import_graph()) == []


def test_upsample_imports_no_other_task() -> None:
    """upsample.py's task builds its model through `SuperResolver` and takes its settings from
    `settings.py`: it reaches into no other task (issue 21)."""
    tasks = {m for m in import_graph()[f"{PACKAGE}.tasks.upsample"] if ".tasks." in m}
    assert tasks == set()


def test_evaluate_imports_no_other_task() -> None:
    """evaluate.py's task uses its own parts (mismatch, robustness, perceptual: shared with
    train.py's test) and builds a checkpoint's model through `SuperResolver`: it imports neither
    of the other scripts' tasks (issue 21)."""
    imported = import_graph()[f"{PACKAGE}.tasks.evaluate"]
    assert not {f"{PACKAGE}.tasks.train", f"{PACKAGE}.tasks.upsample"} & imported
    assert f"{PACKAGE}.resolver" in imported


def test_only_the_resolver_rebuilds_a_generator_from_a_checkpoint() -> None:
    """One way to get a generator from a checkpoint: `SuperResolver` (evaluate.py, upsample.py,
    the command, the benchmarks; issue 21). Nothing else takes the generator's weights out of a
    checkpoint's state_dict."""
    users = {
        name for name, path in module_files().items()
        if "generator_state_dict" in path.read_text()
    }  # fmt: skip
    assert users == {f"{PACKAGE}.checkpoint", f"{PACKAGE}.resolver"}


def write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("lazy", [False, True])
def test_a_cycle_is_found_lazy_imports_included(tmp_path: Path, lazy: bool) -> None:
    """The checks themselves can fail: a cycle through a function-level import is a cycle."""
    back = (
        "def f():\n    from audio_superres.models import net\n" if lazy
        else "from audio_superres.models import net\n"
    )
    src = write_package(tmp_path, {
        "__init__.py": "",
        "models/__init__.py": "",
        "models/net.py": "from audio_superres.dsp.cubic import spline\n",
        "dsp/__init__.py": "",
        "dsp/cubic.py": back,
    })
    graph = import_graph(src)
    assert graph[f"{PACKAGE}.dsp.cubic"] == {f"{PACKAGE}.models.net"}
    assert cycles(graph) == [[f"{PACKAGE}.dsp.cubic", f"{PACKAGE}.models.net"]]


def test_an_import_up_the_layers_is_found(tmp_path: Path) -> None:
    src = write_package(tmp_path, {
        "__init__.py": "",
        "module.py": "",
        "runs.py": "from . import utils\ndef g():\n    import audio_superres.models.net\n",
        "utils.py": "",
        "tasks/__init__.py": "",
        "tasks/train.py": "",
        "models/__init__.py": "",
        "models/net.py": "def f():\n    from ..tasks.train import run\n",
        "data/__init__.py": "",
        "data/dm.py": "import audio_superres.module\n",
    })
    assert layer_violations(import_graph(src)) == [
        f"{PACKAGE}.data.dm -> {PACKAGE}.module",
        f"{PACKAGE}.models.net -> {PACKAGE}.tasks.train",
        f"{PACKAGE}.runs -> {PACKAGE}.models.net",
    ]
