"""The layering contract of `embedscope/`, checked from the code's own imports (and, beside it, the
size rule: no module over 700 lines, no class over 400).

Every module belongs to one layer (LAYERS, bottom to top). A module may import modules of its own
layer and of layers below it, never above; no two modules import each other, directly or round a
circle; no module imports another module's private (`_name`) names; the routers of the server do
not import each other; nothing inside the package imports the package root (`embedscope/__init__`,
the composition root that wires plugins and exports the public API).

All imports count: module-level, inside functions (lazy imports are dependencies too, only later)
and under `if TYPE_CHECKING:` (a circle there is still a circle for anyone reading the code), and
`importlib.import_module`/`find_spec`/`resources.files("package.module")` calls. Registry entries
(`"package.module:Class"` strings a contract loads its implementations by) count for the layers, so
a registry can never name a module above it, but not for circles: a contract's registry naming the
implementations that import the contract is how it finds them. Package `__init__` files may
re-export their own submodules.

Hand-written over `ast` (about a hundred lines) rather than import-linter: it needs no package in
the shared environment, and it also checks the private-name and registry-string rules.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections import defaultdict
from pathlib import Path

EMBEDSCOPE = Path(__file__).resolve().parents[1] / "embedscope"

#: bottom to top; a prefix names a module or a package (all its modules). Why each sits where it does:
LAYERS: list[tuple[str, ...]] = [
    # the exception types every layer raises, and the names of JSON data's types; import nothing of
    # embedscope
    ("embedscope.errors", "embedscope.jsontypes"),
    # helpers over plain data that know nothing of embeddings: the name rule, the metadata filter
    # language, how a hit is shown, PNG charts, the server's query log format (written by serve,
    # read by evaluate), the MovieLens file readers, the input rules every way in shares (ids, texts,
    # one type per metadata field), the one timestamp (clock), the Wikipedia excerpt shipped with
    # gensim (the demo's offline data and the static encoder's general training text: both an
    # encoder and the CLI read it)
    (
        "embedscope.clock",
        "embedscope.names",
        "embedscope.validation",
        "embedscope.field_types",
        "embedscope.filters",
        "embedscope.display",
        "embedscope.plots",
        "embedscope.querylog",
        "embedscope.sources_movielens",
        "embedscope.samples",
    ),
    # text -> vectors and vectors -> neighbours: no storage, no collection (the registry maps
    # encoder names to classes; packages above register their own encoders)
    ("embedscope.encoders", "embedscope.index"),
    # where encoding runs (this process, Ray actors): engines only call an encoder
    ("embedscope.engines",),
    # items, settings and versions on disk or in PostgreSQL; rebuilds encoders and indexes through
    # their registries, so it sits above them
    ("embedscope.store",),
    # reading items from files (CSV, JSONL, Parquet, BEIR) into the store's Item
    ("embedscope.sources",),
    # the one search path; depends on a read interface (search/versions.py), not on Collection
    ("embedscope.search",),
    # the facade and the modules that do its jobs (items, versions, embedding, checks)
    ("embedscope.collection",),
    # tools over a collection: side-by-side comparison, 2-D maps, recommendations, online experiments
    ("embedscope.compare", "embedscope.projection", "embedscope.recommend", "embedscope.experiments"),
    # measuring the tools: IR metrics, recommendation metrics (uses recommend), drift (uses projection)
    ("embedscope.evaluate",),
    # the HTTP API and web page: a thin layer over everything below
    ("embedscope.serve",),
    # the command line: the top
    ("embedscope.cli",),
]

#: packages whose modules must not import one another (each router is one part of the API)
INDEPENDENT: tuple[str, ...] = ("embedscope.serve.routers",)

_DYNAMIC_CALLS = {"import_module", "find_spec", "files"}


def _modules(package_dir: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__)."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_init else parts)] = (path, is_init)
    return out


def _resolve(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    """The module a dotted name refers to: itself, or the nearest enclosing module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package_dir: Path) -> tuple[dict[str, set[str]], dict[str, set[str]], list[str]]:
    """For one package: (module -> modules it imports, module -> modules its registry strings name,
    "module imports a private name" findings)."""
    root = package_dir.name
    modules = _modules(package_dir)
    edges: dict[str, set[str]] = defaultdict(set)
    named: dict[str, set[str]] = defaultdict(set)
    private: list[str] = []
    for module, (path, is_init) in modules.items():
        base = module.split(".") if is_init else module.split(".")[:-1]

        def add(target: str | None, module: str = module, into: dict[str, set[str]] = edges) -> None:
            if target and target != module:
                into[module].add(target)

        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == root:
                        add(_resolve(alias.name, modules))
            elif isinstance(node, ast.ImportFrom):
                source = ".".join(base[: len(base) - node.level + 1] + [node.module or ""]).strip(".")
                source = source if node.level else (node.module or "")
                if source.split(".")[0] != root:
                    continue
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    target = full if full in modules else _resolve(source, modules)
                    add(target)
                    if alias.name.startswith("_") and full not in modules and target != module:
                        private.append(f"{module} imports the private name {alias.name} of {target}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                target = re.fullmatch(rf"({root}(?:\.\w+)+):\w+", node.value)  # "pkg.module:Class"
                if target:
                    add(_resolve(target.group(1), modules), into=named)
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                arg = node.args[0].value
                if called in _DYNAMIC_CALLS and isinstance(arg, str) and arg.startswith(f"{root}."):
                    add(_resolve(arg, modules))
    return edges, named, private


def _layer_of(module: str, layers: list[tuple[str, ...]]) -> int | None:
    for n, prefixes in enumerate(layers):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return n
    return None


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
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

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def violations(
    package_dir: Path, layers: list[tuple[str, ...]], independent: tuple[str, ...] = ()
) -> list[str]:
    """Every way the package breaks the contract, one line each (none: it keeps it)."""
    edges, named, problems = import_graph(package_dir)
    root = package_dir.name
    for module in sorted(_modules(package_dir)):
        if module != root and _layer_of(module, layers) is None:
            problems.append(f"{module} is in no layer: add it to LAYERS")
    for module in sorted(set(edges) | set(named)):
        for target in sorted(edges.get(module, set()) | named.get(module, set())):
            if target == root:
                problems.append(f"{module} imports the package root {root} (the composition root)")
                continue
            mine, theirs = _layer_of(module, layers), _layer_of(target, layers)
            if mine is not None and theirs is not None and theirs > mine:
                problems.append(f"upward import: {module} (layer {mine}) imports {target} (layer {theirs})")
            for package in independent:
                if module.startswith(package + ".") and target.startswith(package + "."):
                    problems.append(f"{module} imports its sibling {target} ({package}: independent modules)")
    for circle in _circles({m: t for m, t in edges.items() if m != root}):
        problems.append(f"import circle: {' <-> '.join(circle)}")
    return problems


def test_embedscope_keeps_its_layers() -> None:
    assert violations(EMBEDSCOPE, LAYERS, INDEPENDENT) == []


#: past these a module or class does more than one job (issue 18): split it by job, as collection/
#: and store/postgres/ are, rather than raise the numbers
MAX_MODULE_LINES, MAX_CLASS_LINES = 700, 400


#: the only packages that may touch a collection's store: the store itself and the facade's modules;
#: everything above asks `Collection` (its methods, `collection/state.py` for the raw facts)
STORE_OWNERS: tuple[str, ...] = ("embedscope.store", "embedscope.collection")


def store_reaches(package_dir: Path, owners: tuple[str, ...] = STORE_OWNERS) -> list[str]:
    """Every `x.store` attribute read outside `owners`, one line each: a reach through the facade
    into its store (issue 18), which a `Collection` method should answer instead."""
    found = []
    for module, (path, _) in _modules(package_dir).items():
        if any(module == o or module.startswith(o + ".") for o in owners):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "store":
                found.append(f"{module}:{node.lineno} reaches through {ast.unparse(node)}")
    return sorted(found)


def test_nothing_above_the_collection_reaches_its_store() -> None:
    assert store_reaches(EMBEDSCOPE) == []


def test_a_new_store_reach_fails_the_contract(tmp_path: Path) -> None:
    """The real tree, copied, with one `collection.store` read added to the server: caught."""
    copy = tmp_path / "embedscope"
    shutil.copytree(EMBEDSCOPE, copy, ignore=shutil.ignore_patterns("__pycache__", "static"))
    state = copy / "serve" / "state.py"
    state.write_text(state.read_text() + "\n\ndef _peek(coll):\n    return coll.store.count()\n")
    found = store_reaches(copy)
    assert len(found) == 1 and found[0].startswith("embedscope.serve.state:"), found
    assert found[0].endswith("reaches through coll.store")


def test_no_module_over_700_lines_and_no_class_over_400() -> None:
    too_big = []
    for path in sorted(EMBEDSCOPE.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(EMBEDSCOPE.parent)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_big.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_big.append(f"{name}: class {node.name}, {node.end_lineno - node.lineno + 1} lines")
    assert too_big == []


def test_the_checker_fails_on_an_upward_import_a_circle_and_a_private_name(tmp_path: Path) -> None:
    """A tiny package breaking each rule once: the checker names every break."""
    pkg = tmp_path / "pkg"
    (pkg / "parts").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg.top import run\n",
        "low.py": "def helper():\n    from pkg.top import run  # lazy, still upward\n    return run\n",
        "top.py": "from pkg.low import helper\nfrom pkg.mid import _secret\n",
        "mid.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.other import x\n",
        "other.py": "import pkg.mid\nx = 1\n",
        "reg.py": "REGISTRY = {'a': 'pkg.mid:Thing'}  # imported by name, later\n",
        "parts/__init__.py": "",
        "parts/a.py": "from pkg.parts import b\n",
        "parts/b.py": "import pkg\n",
        "stray.py": "",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    layers = [("pkg.low", "pkg.reg"), ("pkg.mid", "pkg.other", "pkg.parts"), ("pkg.top",)]
    found = violations(pkg, layers, ("pkg.parts",))
    assert "upward import: pkg.low (layer 0) imports pkg.top (layer 2)" in found
    assert "upward import: pkg.reg (layer 0) imports pkg.mid (layer 1)" in found  # the registry string
    assert "import circle: pkg.low <-> pkg.top" in found
    assert "import circle: pkg.mid <-> pkg.other" in found  # through TYPE_CHECKING
    assert "pkg.top imports the private name _secret of pkg.mid" in found
    assert "pkg.parts.a imports its sibling pkg.parts.b (pkg.parts: independent modules)" in found
    assert "pkg.parts.b imports the package root pkg (the composition root)" in found
    assert "pkg.stray is in no layer: add it to LAYERS" in found
    assert len(found) == 8, found


def test_a_new_upward_import_in_embedscope_fails_the_contract(tmp_path: Path) -> None:
    """The real tree, copied, with one lazy import of the CLI added to the store: caught."""
    copy = tmp_path / "embedscope"
    shutil.copytree(EMBEDSCOPE, copy, ignore=shutil.ignore_patterns("__pycache__", "static"))
    base = copy / "store" / "base.py"
    late = "\n\ndef _late() -> None:\n    from embedscope.cli.app import app  # noqa\n"
    base.write_text(base.read_text() + late)
    found = violations(copy, LAYERS, INDEPENDENT)
    assert found[0] == "upward import: embedscope.store.base (layer 4) imports embedscope.cli.app (layer 11)"
    # and, since the CLI imports the store through the collection, a circle through both
    assert len(found) == 2 and found[1].startswith("import circle: embedscope.cli.app <-> "), found
