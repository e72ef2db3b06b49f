"""``decoylab list``: what the kit has — notebooks, presets, datasets, attacks and defenses — one line each, read
from the same registries the runner and the library check against."""
from __future__ import annotations

import json
from pathlib import Path

KINDS = ("notebooks", "presets", "datasets", "attacks", "defenses")
DEFENSE_NOTES = {"undefended": "no defense: the baseline every cost is measured against",
                 "feature_squeezing": "Xu, Evans, Qi (NDSS 2018): the kit's baseline detector",
                 "honeymodels": "HoneyModels, notebooks 10-12", "attractors": "Injected Attractors, notebooks 20-21",
                 "luring": "Luring, notebook 30", "fingerprints": "Neural Fingerprinting, notebooks 40-41"}


def _title(path: Path) -> str:
    """A notebook's title: its first heading."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "".join(cells[0]["source"]) if cells else ""
    except (OSError, ValueError, KeyError, IndexError):
        return "(unreadable)"
    return text.lstrip("# ").splitlines()[0] if text else ""


def catalogue(kind: str, *, notebooks_dir: str | Path = "notebooks", params_dir: str | Path = "params"):
    """``[(name, description)]`` for ``kind`` (one of ``KINDS``)."""
    if kind == "notebooks":
        from decoylab.tools.runner import discover

        return [(name, _title(path)) for name, path in discover(Path(notebooks_dir)).items()]
    if kind == "presets":
        folders = sorted(p for p in Path(params_dir).glob("*") if p.is_dir())
        return [(folder.name, "notebooks " + " ".join(f.stem.split("_")[0] for f in sorted(folder.glob("*.yaml"))))
                for folder in folders]
    if kind == "datasets":
        from decoylab import data

        return [(name, f"{'x'.join(map(str, data.info(name).shape))}, {len(data.info(name).classes)} classes, "
                       f"{data.info(name).source}") for name in data.names()]
    if kind == "attacks":
        from decoylab.attacks import registry

        return [(name, f"{entry.norm}, targeted: {entry.targeting}, backends: {', '.join(entry.backends)}")
                for name, entry in registry.REGISTRY.items()]
    if kind == "defenses":
        from decoylab.specs.compare import DEFENSES

        return [(name, DEFENSE_NOTES.get(name, "")) for name in DEFENSES]
    raise ValueError(f"kind={kind!r} is not allowed; allowed: {', '.join(KINDS)}")


def show(kinds, **dirs) -> int:
    for kind in kinds:
        rows = catalogue(kind, **dirs)
        print(f"{kind}:")
        width = max((len(name) for name, _ in rows), default=0)
        for name, about in rows:
            print(f"  {name:<{width}}  {about}".rstrip())
    return 0
