"""The house's floors: every import in the project's code runs down (or stays on its floor), and no files import each
other in a loop. The order is docs/architecture.md's "Layout"; a new folder or module must be placed in it here."""

from __future__ import annotations

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# lowest first: a unit may import only units before it (and itself)
FLOORS = [
    "modeling_affectverse",  # the model, processor, media, EWM, WETR, the tiny default (the Hub's remote code)
    "modeling_affectverse.loading",  # one name -> (model, processor)
    "modeling_affectverse.stream",  # the stream command: a file played as a belief stream (loads with `loading`)
    "modeling_affectverse.data",  # manifest, converters, demo data, collator
    "metrics",  # metric modules, the evaluation runner, reports and figures
    "training",  # trainer, SFT script, adapters, ablations
    "hub_cards",  # Hub export, push, handler, Space
    "benchmarks",  # speed and memory (`run.py` and one module per section)
    "quickstart",
]
TOP_LEVEL = {name.split(".")[0] for name in FLOORS}


def unit_of(module: str) -> str | None:
    """The floor a dotted module name stands on (the longest unit that names it), None outside the project."""
    matches = [unit for unit in FLOORS if module == unit or module.startswith(unit + ".")]
    return max(matches, key=len) if matches else None


def module_name(path: str) -> str:
    relative = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
    return relative[: -len(".__init__")] if relative.endswith(".__init__") else relative


def project_files() -> list[str]:
    files = [os.path.join(ROOT, "quickstart.py")]
    for top in sorted(TOP_LEVEL - {"quickstart"}):
        for folder, _, names in os.walk(os.path.join(ROOT, top)):
            files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
    return files


def imports_of(path: str) -> set[str]:
    """Every project module `path` imports, at any depth of its code (a function's import counts too)."""
    name = module_name(path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return {m for m in found if m.split(".")[0] in TOP_LEVEL}


def edges() -> dict[str, set[str]]:
    """module -> the project modules it imports (only names that are modules of the project)."""
    files = project_files()
    modules = {module_name(f) for f in files}
    return {module_name(f): {m for m in imports_of(f) if m in modules} - {module_name(f)} for f in files}


def test_every_import_runs_down_a_floor_or_stays_on_it():
    climbs = []
    for source, targets in edges().items():
        for target in targets:
            below, above = unit_of(source), unit_of(target)
            if FLOORS.index(above) > FLOORS.index(below):
                climbs.append(f"{source} ({below}) imports {target} ({above})")
    assert not climbs, "imports that climb back up a floor:\n" + "\n".join(sorted(climbs))


def test_no_modules_import_each_other_in_a_loop():
    graph = edges()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    loops = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                loops.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not loops, "modules that import each other in a loop:\n" + "\n".join(loops)


def test_every_project_module_stands_on_a_floor():
    """A new top-level folder or module must be given its floor above: none is left unplaced."""
    unplaced = [module_name(f) for f in project_files() if unit_of(module_name(f)) is None]
    assert not unplaced
    tops = {n for n in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, n, "__init__.py"))} - {"tests"}
    assert tops <= TOP_LEVEL, f"packages without a floor: {sorted(tops - TOP_LEVEL)}"


def architecture_sections() -> set[str]:
    """The numbered sections of docs/architecture.md: `## 4. ...` gives "4", `### 4.3 ...` gives "4.3"."""
    text = open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8").read()
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, re.M))


def test_every_pointer_to_the_architecture_names_a_section_that_exists():
    """Code and docs point to the design as `docs/architecture.md §N`; each N (both ends of a range) is a heading."""
    sections = architecture_sections()
    assert {"2", "4", "4.3", "4.5", "4.8", "7"} <= sections
    missing, pointers = [], 0
    paths = project_files() + [
        os.path.join(folder, name)
        for top in ("docs", "configuration")
        for folder, _, names in os.walk(os.path.join(ROOT, top))
        for name in names
        if name.endswith((".md", ".yaml"))
    ]
    for path in paths + [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "setup.cfg")]:
        text = open(path, encoding="utf-8").read()
        assert "DESIGN §" not in text and "DESIGN.md" not in text, f"{path}: points to a file outside the repository"
        for first, last in re.findall(r"architecture\.md §(\d+(?:\.\d+)?)(?:[-–](\d+(?:\.\d+)?))?", text):
            pointers += 1
            missing += [f"{os.path.relpath(path, ROOT)}: §{n}" for n in (first, last) if n and n not in sections]
    assert pointers > 20 and not missing, missing


def test_the_model_package_reads_in_short_pieces():
    """No function of the model package is longer than 80 lines, and no class of the modeling file longer than 400
    (transformers' llava: 385 lines, its longest function 72)."""
    long_functions, long_classes = [], []
    for path in project_files():
        if module_name(path).split(".")[0] != "modeling_affectverse":
            continue
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
            length = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and length > 80:
                long_functions.append(f"{module_name(path)}.{node.name}: {length} lines")
            if isinstance(node, ast.ClassDef) and path.endswith("modeling_affectverse.py") and length > 400:
                long_classes.append(f"{node.name}: {length} lines")
    assert not long_functions and not long_classes, long_functions + long_classes
