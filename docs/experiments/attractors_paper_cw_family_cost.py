"""What notebook 20's C&W family costs at the ``paper`` preset, timed at a few iterations and scaled.

Zhang, Chang, Lee, "Detection and Recovery of Adversarial Attacks with Injected Attractors", Table VII (DEEPSEC's
settings): C&W-L2 and EAD run 10 000 iterations x 10 binary-search steps, OptMargin 1000 x 4 on 20 noise copies.
The kit's implementations (``decoylab.attacks.cw``) run every one of those iterations (no early stop), so an
attack's cost per input is its cost per iteration times the iteration count. The cost probe
(``decoylab bench --rehearsal --estimate``) would run them in full on its probe batch (EAD on 8 inputs: 15-21
minutes per call on 2 cores, on 128 about 2.5-3 hours); this script instead runs notebook 20 under the probe with
only these attacks and every attack's iterations capped at ``--cap`` per binary step (a copy of ``params/`` with
``ATTACKS`` and ``ITERATION_CAP`` set in ``paper/20_attractors.yaml``), then scales each call's seconds per input
by the uncapped over the capped iteration count. It prints, per call (on C, on M, on M_(d,r)), seconds per input and hours for the
notebook's 1000 attacked images.

    python docs/experiments/attractors_paper_cw_family_cost.py --out /tmp/cwcost [--points 128] [--cap 20]
        [--attacks cw2 optmargin ead] [--source DIR]

``--points`` is the inputs attacked per call: 128, the CPU's default batch, is what the full run attacks at once;
on 8, C&W-L2 and EAD cost more per input and OptMargin less (its passes carry 20 noise copies per input).
"""
from __future__ import annotations

import argparse
import collections
import json
import shutil
import tempfile
from pathlib import Path

import yaml

from decoylab import costprobe
from decoylab.experiments.attractors import attack_settings
from decoylab.tools import rehearsal

FAMILY = ("cw2", "optmargin", "ead")


def capped_params(params_dir: Path, attacks: list[str], cap: int, into: Path) -> Path:
    """A copy of ``params_dir`` whose ``paper`` preset runs only ``attacks`` in notebook 20, capped at ``cap``."""
    shutil.copytree(params_dir, into)
    preset = into / "paper" / "20_attractors.yaml"
    settings = yaml.safe_load(preset.read_text())
    settings.update(ATTACKS=list(attacks), ITERATION_CAP=cap)
    preset.write_text(yaml.safe_dump(settings, sort_keys=False))
    return into


def scale(attack: str, cap: int) -> float:
    """Uncapped over capped iterations per binary step (the binary steps are not capped here)."""
    full = attack_settings(attack, "mnist")[1]["max_iter"]
    return full / min(full, cap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the staged data, the run and its probe log")
    parser.add_argument("--points", type=int, default=128, help="inputs attacked per call (default 128)")
    parser.add_argument("--cap", type=int, default=20, help="iterations per binary step while timing (default 20)")
    parser.add_argument("--attacks", nargs="+", default=list(FAMILY), choices=FAMILY)
    parser.add_argument("--source", default=None, help="folder of the four idx files (default: Debian's)")
    parser.add_argument("--params-dir", default="params")
    args = parser.parse_args()
    if args.points < 1 or args.cap < 1:
        parser.error(f"--points {args.points} and --cap {args.cap}: both must be integers >= 1")
    if not (Path(args.params_dir) / "paper" / "20_attractors.yaml").is_file():
        parser.error(f"--params-dir {args.params_dir}: no paper/20_attractors.yaml in it (the repository's params/)")

    with tempfile.TemporaryDirectory() as tmp:
        params = capped_params(Path(args.params_dir), args.attacks, args.cap, Path(tmp) / "params")
        code = rehearsal.main(source=args.source, out=args.out, notebooks=["20_attractors"], params_dir=str(params),
                              estimate=True, probe_points=args.points)
    if code != 0:
        raise SystemExit(f"the probed run failed (exit {code}); see {args.out}/probe-runs")
    rows = [r for r in costprobe.read(Path(args.out) / "probe" / "20_attractors.jsonl") if r["what"] in args.attacks]
    print(f"\nnotebook 20 on 'paper', {args.points} inputs per call, iterations capped at {args.cap} and scaled")
    print(f"{'attack':10}{'call':>5}{'s per input':>13}{'hours for 1000':>16}")
    total: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()
    for r in rows:
        calls[r["what"]] += 1
        per_input = r["seconds_per_unit"] * scale(r["what"], args.cap)
        hours = per_input * r["count"] / 3600
        total[r["what"]] += hours
        print(f"{r['what']:10}{calls[r['what']]:>5}{per_input:>13.1f}{hours:>16.1f}")
    print(json.dumps({k: round(v, 1) for k, v in total.items()}), f"all: {sum(total.values()):.1f} h")


if __name__ == "__main__":
    main()
