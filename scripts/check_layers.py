"""Check the package's layering: every import points to the same or a lower layer, no import
cycle between modules or between subpackages, and no import inside a function except of an optional heavy dependency.

Run from the repository root:  python scripts/check_layers.py   (exit status 1 on a violation)

The layers follow DESIGN.md: 1 data and model description; 2 arithmetic substrates (interval
tensors, the program IR and its encoding API); 3 losses, threats, the recipe, the interval step
and the MIP step encoders; 4 solver backends; 5 step bounders and the MIBP certificate; 6 training and
certificates; 7 reports; 8 the command line and the package's public names.
"""
from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = {"mibpcert": os.path.join(ROOT, "mibpcert"), "mibpcert.solvers": os.path.join(ROOT, "solvers")}
LAYERS = {
    "mibpcert.data": 1, "mibpcert.model": 1, "mibpcert.version": 1, "mibpcert.persist": 1,
    "mibpcert.interval": 2, "mibpcert.ir": 2,
    "mibpcert.losses": 3, "mibpcert.threats": 3, "mibpcert.config": 3, "mibpcert.data_checks": 3,
    "mibpcert.steps": 3, "mibpcert.encode": 3,
    "mibpcert.solvers": 4,
    "mibpcert.encode.tighten": 5, "mibpcert.encode.predict": 5, "mibpcert.bounders": 5,
    "mibpcert.train": 6, "mibpcert.checkpoint": 6, "mibpcert.certificates": 6, "mibpcert.backdoor": 6,
    "mibpcert.report": 7,
    "mibpcert.cli": 8, "mibpcert.__init__": 8,
}
HEAVY = ("gurobipy", "pyomo", "pyscipopt", "matplotlib", "ray", "tqdm")


def modules() -> dict[str, str]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for dirpath, _, files in os.walk(folder):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), folder)[:-3].replace(os.sep, ".")
                    name = pkg if rel == "__init__" else f"{pkg}.{rel}".removesuffix(".__init__")
                    out["mibpcert.__init__" if name == "mibpcert" else name] = os.path.join(dirpath, f)
    return out


def layer(name: str) -> int:
    while name not in LAYERS and "." in name:
        name = name.rsplit(".", 1)[0]
    return LAYERS.get(name, 0)


def imports(name: str, path: str, known: set[str]):
    """(imported module, line, inside a function) for every import of a package module."""
    tree = ast.parse(open(path).read(), path)
    pkg = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    if name == "mibpcert.__init__":
        pkg = "mibpcert"
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = {id(c) for f in funcs for c in ast.walk(f) if c is not f}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            yield t, node.lineno, id(node) in inner


def main() -> int:
    mods = modules()
    known = set(mods) | {"mibpcert"}
    problems, graph = [], {m: set() for m in mods}
    for name, path in sorted(mods.items()):
        for target, line, in_function in imports(name, path, known):
            where = f"{os.path.relpath(path, ROOT)}:{line}"
            if target.split(".")[0] != "mibpcert":
                if in_function and not target.startswith(HEAVY) and name != "mibpcert.__init__":
                    problems.append(f"{where}: imports {target} inside a function")
                continue
            target = "mibpcert.__init__" if target == "mibpcert" else target
            if target not in mods:
                target = next((m for m in mods if target.startswith(m + ".")), target)
            if target == name or target not in mods:
                continue
            if in_function:
                problems.append(f"{where}: imports {target} inside a function")
            graph[name].add(target)
            if layer(target) > layer(name):
                problems.append(f"{where}: {name} (layer {layer(name)}) imports {target} (layer {layer(target)})")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    packages: dict[str, set[str]] = {}
    for m, targets in graph.items():  # subpackages as one node: no two may depend on each other
        packages.setdefault(_package(m), set()).update(_package(t) for t in targets if _package(t) != _package(m))
    problems += [f"package import cycle: {' -> '.join(c)}" for c in cycles(packages)]
    for p in problems:
        print(p)
    print(f"{len(mods)} modules, {sum(map(len, graph.values()))} imports between them, {len(problems)} problems")
    return 1 if problems else 0


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
