"""The library's shape: no import cycles, imports point down the layers, modules stay readable, and the
torch-free parameter data agrees with the registries it mirrors."""
import ast
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lib" / "decoylab"
MAX_LINES = 450

# Which top-level parts of the package each part may import (itself always). Foundations import none of
# the science or orchestration; defenses and attacks never import the experiments built on them.
FOUNDATIONS = {"__init__", "__main__", "config", "data", "models", "train", "cache", "fileio", "metrics", "stats",
               "params", "specs", "results", "paper_values", "plots", "parallel", "claims", "costprobe"}
MAY_IMPORT = {
    "foundations": FOUNDATIONS,
    "attacks": FOUNDATIONS | {"attacks"},
    "defenses": FOUNDATIONS | {"attacks", "defenses"},
    "experiments": FOUNDATIONS | {"attacks", "defenses", "experiments"},
    "widgets": FOUNDATIONS | {"attacks", "defenses", "experiments", "widgets"},
    "tools": FOUNDATIONS | {"attacks", "defenses", "experiments", "widgets", "tools"},
}
TORCH_FREE = {"params", "specs", "fileio"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``decoylab`` module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("decoylab")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("decoylab"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in files and m != name} for name, path in files.items()}


def _part(module: str) -> str:
    if module == "decoylab.__main__":
        return "tools"  # ``python -m decoylab`` is the command line
    top = module.split(".")[1] if "." in module else "__init__"
    return "foundations" if top in FOUNDATIONS else top


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            # a package importing its own submodules (``__init__`` re-exports) is not a cycle of ideas
            if len(component) > 1 and not all(m.startswith(min(component, key=len) + ".") or m == min(component, key=len)
                                               for m in component):
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def _upward_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in graph.items():
        part = _part(module)
        if part not in MAY_IMPORT:  # a new top-level module must be placed in a layer, not crash the check
            wrong.append(f"{module} is in no layer: add it to FOUNDATIONS or MAY_IMPORT")
            continue
        allowed = MAY_IMPORT[part]
        for target in targets:
            top = target.split(".")[1] if "." in target else "__init__"
            if top not in allowed:
                wrong.append(f"{module} imports {target}")
    return wrong


def test_the_package_has_no_import_cycles():
    assert not _cycles(_graph()), f"import cycles: {_cycles(_graph())}"


def test_imports_point_down_the_layers():
    wrong = _upward_imports(_graph())
    assert not wrong, "\n".join(wrong)


def test_the_checks_catch_a_cycle_and_an_upward_import():
    graph = {"decoylab.params": {"decoylab.defenses.luring"}, "decoylab.defenses.luring": {"decoylab.params"},
             "decoylab.attacks.linf": {"decoylab.experiments.compare"}, "decoylab.experiments.compare": set()}
    assert _cycles(graph) == [["decoylab.defenses.luring", "decoylab.params"]]
    assert _upward_imports(graph) == ["decoylab.params imports decoylab.defenses.luring",
                                      "decoylab.attacks.linf imports decoylab.experiments.compare"]


def test_no_module_is_over_the_line_limit():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_torch_free_modules_import_no_heavy_library():
    heavy = ("torch", "numpy", "sklearn", "pandas", "seaborn", "matplotlib")
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if "." in module and module.split(".")[1] in TORCH_FREE:
            names = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names.add(node.module.split(".")[0])
            assert not names & set(heavy), f"{module} imports {names & set(heavy)}"


def test_checking_every_preset_imports_no_torch():
    code = ("import sys\nfrom pathlib import Path\nfrom decoylab.tools import runner\n"
            "for preset in ('tiny', 'quick', 'paper', 'paper-cifar10', 'paper-svhn'):\n"
            "    runner.plan(preset, None, Path('notebooks'), Path('params'), Path('runs'))\n"
            "print(sorted(m for m in ('torch', 'numpy', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_torch_free_name_lists_mirror_the_registries():
    from decoylab import attacks, config, data, models
    from decoylab.specs import common

    assert common.DATASETS == data.names()
    assert common.MODELS == models.names()
    assert common.COMPONENTS == tuple(models.COMPONENTS)
    assert common.ATTACKS == attacks.names()
    assert common.DEVICES == config.DEVICES
    assert common.ART_ATTACKS == tuple(n for n in attacks.names() if "art" in attacks.catalogue_entry(n)["backends"])


def test_the_split_sizes_that_presets_are_checked_against_are_the_data_sets():
    """A preset's N_TRAIN / N_TEST beyond a split is refused before anything runs, from ``SPLIT_SIZES``: the
    embedded sets' sizes there are those ``data.load`` gives (the downloaded ones are the standard splits)."""
    from decoylab import data, specs
    from decoylab.specs import common

    assert set(common.SPLIT_SIZES) == set(common.DATASETS)
    for name in ("mnist5k", "digits"):
        assert common.SPLIT_SIZES[name] == (len(data.load(name, "train").y), len(data.load(name, "test").y))
    assert specs.notebook_problems("10_honeymodels", {"DATASET": "mnist5k", "N_TRAIN": 5000}) == [
        "N_TRAIN=5000 is not allowed; mnist5k's train split has 4000 images"]
    assert specs.notebook_problems("30_luring", {"DATASET": "digits", "N_TEST": 360})[0].startswith("N_TEST=360")
    assert specs.notebook_problems("30_luring", {"DATASET": "mnist", "N_TRAIN": 60000}) == []


def test_an_attack_the_chosen_backend_lacks_is_refused_before_training():
    from decoylab import specs

    assert "only fgsm, bim, pgd" in specs.notebook_problems("00_tour", {"ATTACK": "spsa", "ATTACK_BACKEND": "art"})[0]
    assert specs.notebook_problems("00_tour", {"ATTACK": "pgd", "ATTACK_BACKEND": "art"}) == []


def _unsafe_loads(source: str) -> list[int]:
    """Lines of ``torch.load(...)`` / ``load(...)`` (imported from torch) calls without ``weights_only=True``."""
    tree = ast.parse(source)
    names = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and node.module == "torch" for alias in node.names if alias.name == "load"}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        is_torch_load = (isinstance(func, ast.Attribute) and func.attr == "load" and isinstance(func.value, ast.Name)
                         and func.value.id == "torch") or (isinstance(func, ast.Name) and func.id in names)
        safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                   for k in node.keywords)
        if is_torch_load and not safe:
            lines.append(node.lineno)
    return lines


def test_every_torch_load_in_the_library_refuses_pickled_code():
    """``torch.load(..., weights_only=False)`` unpickles arbitrary objects: a crafted .pt runs code on load.
    Every load in the library must pass ``weights_only=True`` literally."""
    assert _unsafe_loads("import torch\ntorch.load(p, weights_only=False)\n") == [2]  # the scan sees a bad call
    assert _unsafe_loads("from torch import load as tl\ntl(p)\n") == [2]
    assert _unsafe_loads("import torch\ntorch.load(p, map_location='cpu', weights_only=True)\n") == []
    found = {str(path.relative_to(ROOT)): _unsafe_loads(path.read_text()) for path in PACKAGE.rglob("*.py")}
    assert {path: lines for path, lines in found.items() if lines} == {}
    assert sum("torch.load(" in path.read_text() for path in PACKAGE.rglob("*.py")) >= 5  # the loads were scanned
