"""The project's import graph, read from the source (AST, no third-party
tool): no cycles, and the gateway and the technician's tools never import
the simulator (issue 13, item 3).

Every `import` and `from ... import` counts, at module level or inside a
function: a function-level import hides a cycle from Python's loader, not
from a reader. `from pkg import name` is an edge to `pkg.name` when that is
a module, else to `pkg`. A package's `__init__` is the package itself.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "firmware", "gateway", "protocol", "simulator", "tools")
# Never imported by gateway/ or tools/: a technician's tool installs and runs
# on a machine where the simulator is of no use, and the gateway is a product.
FORBIDDEN = {"gateway": ("simulator",), "tools": ("simulator",)}


def modules(root=ROOT, packages=PACKAGES):
    """{module name: path} of every project module (tests/support as `support`)."""
    found = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    for path in sorted((root / "tests" / "support").glob("*.py")):
        name = "support" if path.stem == "__init__" else "support." + path.stem
        found[name] = path
    return found


def _base(name, path, level, module):
    """The absolute module of a relative import."""
    if not level:
        return module
    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    pkg = pkg[:len(pkg) - (level - 1)]
    return ".".join(pkg + ([module] if module else []))


def imports(name, path, known):
    """The project modules `name` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = set()

    def add(target):
        # The module itself if it is ours, else its closest package that is.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _base(name, path, node.level, node.module)
            for alias in node.names:
                sub = "%s.%s" % (base, alias.name)
                add(sub if sub in known else base)
    return out


def graph(known=None):
    known = known or modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(g):
    """Every strongly connected component of more than one module (Tarjan,
    iterative), each sorted; plus modules that import themselves."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in sorted(g):
        if start in index:
            continue
        work = [(start, iter(sorted(g[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in g:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def _path(g, comp):
    """One cycle through a component, for the message: a -> b -> ... -> a."""
    members = set(comp)
    start = comp[0]
    seen = {start: None}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(g[v] & members):
            if w == start:
                hops = [v]
                while seen[hops[-1]] is not None:
                    hops.append(seen[hops[-1]])
                return " -> ".join(reversed(hops)) + " -> " + start
            if w not in seen:
                seen[w] = v
                todo.append(w)
    return ", ".join(comp)


def test_no_import_cycles():
    g = graph()
    assert len(g) > 100  # the walk found the project
    found = cycles(g)
    assert not found, "import cycles:\n" + "\n".join(_path(g, c) for c in found)


def test_gateway_and_tools_never_import_the_simulator():
    g = graph()
    bad = sorted("%s imports %s" % (name, target) for name, targets in g.items()
                 for target in targets for pkg, banned in FORBIDDEN.items()
                 if name.split(".")[0] == pkg and target.split(".")[0] in banned)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("files, want", [
    # module level both ways
    ({"a/__init__.py": "", "a/x.py": "from a import y\n", "a/y.py": "import a.x\n"}, [["a.x", "a.y"]]),
    # a function-level import closes the cycle
    ({"a/__init__.py": "", "a/x.py": "from a.y import f\n",
      "a/y.py": "def f():\n    from a.x import g\n"}, [["a.x", "a.y"]]),
    # relative imports, three modules
    ({"a/__init__.py": "", "a/x.py": "from . import y\n", "a/y.py": "from .z import q\n",
      "a/z.py": "from .x import r\n"}, [["a.x", "a.y", "a.z"]]),
    # a chain is not a cycle
    ({"a/__init__.py": "", "a/x.py": "from a import y\n", "a/y.py": "import os\n"}, []),
])
def test_the_walk_finds_cycles(tmp_path, files, want):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    known = modules(tmp_path, ("a",))
    assert cycles(graph(known)) == want


def test_the_walk_sees_a_forbidden_import(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "simulator").mkdir()
    (tmp_path / "tools" / "t.py").write_text("def f():\n    from simulator.procs import Api\n")
    (tmp_path / "simulator" / "procs.py").write_text("")
    known = modules(tmp_path, ("tools", "simulator"))
    assert graph(known)["tools.t"] == {"simulator.procs"}
