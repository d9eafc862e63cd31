"""The package layout is the data flow: a module imports only from its own layer or the layers
below it, no import cycle exists, and only `lab.runtime` knows which runtimes there are.

Pure static checks over the source (AST), so a violation fails here before anything runs."""
from __future__ import annotations

import ast
from pathlib import Path

LAB = Path(__file__).resolve().parent.parent / "lab"

# lowest first; a module may import from its own layer and every layer before it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("lab.errors", "lab.wait", "lab.log")),
    ("model", ("lab.model",)),
    ("runtime", ("lab.runtime",)),
    ("cluster", ("lab.cluster",)),
    ("workload", ("lab.workload",)),
    ("replication", ("lab.replication",)),
    ("failover", ("lab.failover", "lab.ha")),
    ("reads", ("lab.reads",)),
    ("methods", ("lab.methods",)),
    ("api", ("lab.api",)),
    ("scenario", ("lab.scenario", "lab.lessons", "lab.bench")),
    ("ui", ("lab.ui",)),
    ("top", ("lab.cli", "lab.pytest_plugin", "lab.__main__", "lab")),
]
# the runtimes themselves: only lab.runtime imports them (everyone else uses lab.runtime's functions
# and the Runtime protocol of lab.runtime.base, and never asks which runtime a lab runs on)
RUNTIME_PRIVATE = ("lab.runtime.local", "lab.runtime.docker", "lab.runtime.docker_services", "lab.runtime.dockerapi", "lab.runtime.netns",
                   "lab.runtime.procs", "lab.runtime.programs")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LAB.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(mod: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    assert best is not None, f"{mod} belongs to no layer: add it to LAYERS"
    return best


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in LAB.rglob("*.py")}


def imports(path: Path, mod: str, mods: dict[str, Path]) -> list[tuple[str, int, bool, str]]:
    """(imported lab module, line, inside a function, source line) for every import of lab code."""
    src = path.read_text()
    lines = src.splitlines()
    tree = ast.parse(src)
    is_pkg = path.name == "__init__.py"
    out = []

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                continue   # names for type annotations only: nothing is imported when the code runs
            f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target == "lab" or target.startswith("lab."):
                    for a in child.names:
                        sub = f"{target}.{a.name}"
                        out.append((sub if sub in mods else target, child.lineno, in_func, lines[child.lineno - 1]))
            elif isinstance(child, ast.Import):
                for a in child.names:
                    if a.name == "lab" or a.name.startswith("lab."):
                        out.append((a.name, child.lineno, in_func, lines[child.lineno - 1]))
            visit(child, f)

    visit(tree, False)
    return out


def test_every_module_imports_downward_only():
    mods = modules()
    bad = []
    for mod, path in mods.items():
        for target, line, _, _ in imports(path, mod, mods):
            if layer_of(target) > layer_of(mod):
                bad.append(f"{mod}:{line} imports {target} ({LAYERS[layer_of(target)][0]} is above "
                           f"{LAYERS[layer_of(mod)][0]})")
    assert bad == [], "\n".join(bad)


def test_only_the_runtime_package_knows_the_runtimes():
    mods = modules()
    bad = []
    for mod, path in mods.items():
        if mod.startswith("lab.runtime"):
            continue
        for target, line, _, _ in imports(path, mod, mods):
            if target.startswith(RUNTIME_PRIVATE):
                bad.append(f"{mod}:{line} imports {target}")
    assert bad == [], "\n".join(bad)


def test_imports_inside_functions_say_why():
    """Imports belong at the top. The exceptions keep `pglab` start-up fast (a command imports
    only what it needs) or defer a heavy optional library; each is marked `# lazy: <why>`."""
    mods = modules()
    bad = []
    for mod, path in mods.items():
        for target, line, in_func, text in imports(path, mod, mods):
            if in_func and "# lazy:" not in text:
                bad.append(f"{mod}:{line}: {text.strip()}")
    assert bad == [], "\n".join(bad)


def test_no_import_cycles():
    mods = modules()
    graph = {m: {t for t, _, in_func, _ in imports(p, m, mods) if t in mods and t != m and not in_func}
             for m, p in mods.items()}
    # a package's __init__ importing its own submodules is how packages re-export: not a cycle
    for m in graph:
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    seen: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def dfs(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if seen.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in seen:
                dfs(t)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            dfs(m)
    assert cycles == [], "\n".join(cycles)


def test_layer_table_matches_the_packages():
    """Every package under lab/ is in the table, so a new package is placed deliberately."""
    for p in LAB.iterdir():
        if p.is_dir() and (p / "__init__.py").exists():
            layer_of(f"lab.{p.name}")
