"""merkit's packages only import downward (docs/design.md): no import cycle, and no import from
a lower layer into a higher one, whether at the top of a module or inside a function. Imports
under ``if TYPE_CHECKING:`` are for annotations only and are not counted."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "merkit"

# Bottom to top; a module may import from its own layer and the ones below. The first entry
# whose prefix matches a module names its layer (so "merkit.predictors" covers the package).
LAYERS = [
    ("package root", ["merkit"]),
    ("runtime", ["merkit.config", "merkit.stdio", "merkit.workers", "merkit.outputs", "merkit.stopping",
                 "merkit.cpu_memory", "merkit.checkpoint", "merkit.metrics", "merkit.reference"]),
    ("audio", ["merkit.audio", "merkit.av_decode", "merkit.loudness", "merkit.midi"]),
    ("front end", ["merkit.features", "merkit.encoders", "merkit.frontend", "merkit.content"]),
    ("data", ["merkit.data"]),
    ("models", ["merkit.models"]),
    ("evaluation", ["merkit.evaluation"]),
    ("training", ["merkit.training"]),
    ("pipelines", ["merkit.results", "merkit.result_store", "merkit.tags", "merkit.playlists", "merkit.extract", "merkit.dynamic_features", "merkit.onnx_backend",
                   "merkit.feature_cache", "merkit.cluster", "merkit.predictors", "merkit.predict", "merkit.plots",
                   "merkit.personal", "merkit.recipes"]),
    ("interface", ["merkit.cli", "merkit.commands", "merkit.web", "merkit.__main__"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    assert best is not None, f"{module}: in no layer of tests/test_layers.py (add it where it belongs)"
    return best[0]


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def import_edges() -> list[tuple[str, str, int]]:
    """``(importer, imported, line)`` for every import of a merkit module by a merkit module."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    pkg = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(pkg + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t not in modules and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in modules and t != name and t.startswith("merkit"):
                    edges.append((name, t, node.lineno))
    return edges


def test_every_module_is_in_a_layer():
    for p in ROOT.rglob("*.py"):
        layer_of(module_name(p))


def test_no_import_points_up():
    up = sorted({f"{a}:{line} imports {b} ({LAYERS[layer_of(a)][0]} -> {LAYERS[layer_of(b)][0]})"
                 for a, b, line in import_edges() if layer_of(b) > layer_of(a)})
    assert not up, "imports from a lower layer into a higher one:\n" + "\n".join(up)


def test_no_import_cycle():
    graph = defaultdict(set)
    for a, b, _ in import_edges():
        graph[a].add(b)
    # Tarjan's strongly connected components: any component of two or more modules is a cycle
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_cycle_between_top_level_parts():
    """The same at the level of top-level parts (packages and modules under merkit): a package
    that imports another that imports it back is a circle even when no two modules are."""
    def part(m):
        return ".".join(m.split(".")[:2])

    graph = defaultdict(set)
    for a, b, _ in import_edges():
        if part(a) != part(b):
            graph[part(a)].add(part(b))
    circles = []
    for a in list(graph):
        seen, stack = set(), list(graph[a])
        while stack:  # everything a reaches; a circle if a is among it
            v = stack.pop()
            if v == a:
                circles.append(a)
                break
            if v not in seen:
                seen.add(v)
                stack.extend(graph.get(v, ()))
    assert not circles, "top-level parts in an import circle: " + ", ".join(sorted(circles))


def test_the_checker_sees_imports_inside_functions():
    """The check is not vacuous: it finds the function-level imports the commands rely on."""
    edges = import_edges()
    assert ("merkit.commands.predict", "merkit.predict", ) in {(a, b) for a, b, _ in edges}
    assert len(edges) > 300


def test_long_modules_say_why():
    """No module over ~400 lines without a reason stated in its docstring ("Size: ...")."""
    long = []
    for p in ROOT.rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        if text.count("\n") > 410:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "Size:" not in doc:
                long.append(f"{p.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not long, "long modules without a stated reason: " + ", ".join(long)


# What a function-level import may defer: the libraries whose import costs time or memory that a
# caller may not need (`merkit --help` loads none of them; numpy included: the help path has none)
HEAVY = {"numpy", "torch", "scipy", "sklearn", "matplotlib", "soundfile", "soxr", "madmom", "onnx", "onnxruntime",
         "dask", "distributed", "uvicorn", "starlette", "skops", "multipart"}


def _module_level_imports() -> tuple[dict[str, set[str]], dict[str, set[str]], list[tuple[str, str, int]]]:
    """Per module: the merkit modules and outside top-level packages it imports when it is
    imported (not inside functions, not under TYPE_CHECKING), and the function-level merkit imports."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    inner, outside = defaultdict(set), defaultdict(set)
    deferred = []
    in_function = set()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function.update((name, n.lineno) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
                continue
            if (name, node.lineno) in in_function or (isinstance(node, ast.ImportFrom) and node.level) or \
                    (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("merkit")):
                continue
            for mod in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]):
                outside[name].add(mod.split(".")[0])
        parts = name.split(".")
        inner[name].update(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
    for importer, imported, line in import_edges():
        (deferred.append((importer, imported, line)) if (importer, line) in in_function
         else inner[importer].add(imported))
    return inner, outside, deferred


def test_imports_inside_functions_defer_a_heavy_library():
    """An import inside a function is there to defer a heavy library (HEAVY) that the importing
    module does not load already; any other import belongs at the top of the module (the layer
    tests above already rule out the cycles that used to be dodged this way)."""
    inner, outside, deferred = _module_level_imports()
    memo: dict[str, set[str]] = {}

    def loads(m: str, seen=frozenset()) -> set[str]:
        if m not in memo:
            got = set(outside[m]) & HEAVY
            for d in inner[m] - seen - {m}:
                got |= loads(d, seen | {m})
            memo[m] = got
        return memo[m]

    assert deferred, "the checker found no import inside a function: it is broken"
    pointless = sorted({f"{a}:{line} imports {b} (defers nothing: {b} loads {sorted(loads(b)) or 'no heavy library'})"
                        for a, b, line in deferred if not loads(b) - loads(a)})
    assert not pointless, "\n".join(pointless)
