"""What notebook 30 (Luring) costs at a preset's budgets on this machine, measured part by part.

Bernhard, Moellic, Dutertre, "Luring of Transferable Adversarial Perturbations in the Black-Box Paradigm":
P trains 50 000 steps (Algorithm 1, Appendix B), Tables 1/14 attack with SPSA 100 iterations x 128 samples,
ECO 20 000 queries and MIM-W 1000 iterations (§4.2, Appendix F). A full run of the notebook on `paper-mnist5k`
takes hours on 2 cores; this script times each part on a few points and steps instead, and multiplies by the
counts the notebook runs with the preset's parameters, so that a user (or a session) knows before starting.

SPSA, ECO and the iterative attacks run their whole budget and a training step costs the same at any point of
training, so untrained networks stand in; CW-L2's line search tries 1-6 step sizes per iteration depending on the
loss (its line is the least certain), and Table 9's CW-L2 on M alone is timed on M∘P (an upper bound). Per-epoch validation,
the clean predictions and the analyses of sections 7-8 are left out (seconds at this size).

    python docs/experiments/luring_paper_budget_cost.py [--preset paper-mnist5k] [--points 8] [--steps 50]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbformat
import torch
import yaml

from decoylab import attacks, data, models
from decoylab.defenses import luring as lu
from decoylab.experiments import luring as lx

ROOT = Path(__file__).resolve().parents[2]


def notebook_parameters(preset: str) -> dict:
    """Notebook 30's parameter defaults with the preset's YAML applied, as papermill would."""
    nb = nbformat.read(ROOT / "notebooks" / "30_luring.ipynb", 4)
    cell = next(c.source for c in nb.cells if c.cell_type == "code" and "tags" in c.metadata
                and "parameters" in c.metadata["tags"])
    values: dict = {}
    exec("from typing import Optional\n" + cell, values)
    values.update(yaml.safe_load((ROOT / "params" / preset / "30_luring.yaml").read_text()) or {})
    return values


def seconds_per_step(loss, model, params_to_train, x, labels, steps: int) -> float:
    opt = torch.optim.Adam(params_to_train, lr=1e-3)
    for i in range(steps + 5):
        if i == 5:  # the first steps warm the allocator and kernels up
            start = time.perf_counter()
        opt.zero_grad()
        loss(model, x, labels).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def seconds_per_point(model, attack, x, y, preset, settings) -> float:
    start = time.perf_counter()
    attacks.run(attack, model, x, y, preset=preset, **settings)
    return (time.perf_counter() - start) / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper-mnist5k")
    parser.add_argument("--points", type=int, default=8, help="points each attack is timed on")
    parser.add_argument("--steps", type=int, default=50, help="optimiser steps each training loss is timed on")
    args = parser.parse_args()
    p = notebook_parameters(args.preset)
    info = data.info(p["DATASET"])
    shape, classes = tuple(info.shape), info.num_classes
    torch.manual_seed(0)
    target = models.build(p["TARGET_MODEL"], shape, classes)
    augmented = lu.Augmented(models.build_component(p["COMPONENT"], shape), target)
    stack = lu.Augmented(models.build_component(p["COMPONENT"], shape), models.build(p["TARGET_MODEL"], shape, classes),
                         frozen_target=False)
    n_train = len(data.load(p["DATASET"], "train", n=p["N_TRAIN"], seed=p["SEED"], data_root=p["DATA_ROOT"]).y)
    n_fit = int(n_train * (1 - p["VALIDATION_FRACTION"]))

    rows = []  # (part, unit cost s, count, what the count is)

    def batch(size):
        return torch.rand(size, *shape), torch.randn(size, classes), torch.randint(0, classes, (size,))

    x, logits, labels = batch(p["COMPONENT_BATCH_SIZE"])
    component_steps = p["COMPONENT_STEPS"] or p["COMPONENT_EPOCHS"] * -(-n_fit // p["COMPONENT_BATCH_SIZE"])
    for approach, loss in (("luring", lu.luring_loss(p["LURING_WEIGHT"])), ("ce", lu.mimic_loss)):
        if approach in p["APPROACHES"]:
            cost = seconds_per_step(loss, augmented, augmented.component.parameters(), x, logits, args.steps)
            rows.append((f"train P ({lu.APPROACH_LABELS[approach]})", cost, component_steps, "steps"))
    if "auto" in p["APPROACHES"]:
        xa, _, _ = batch(128)
        auto_steps = p["AUTO_STEPS"] or component_steps
        cost = seconds_per_step(lu.reconstruction_loss, augmented, augmented.component.parameters(), xa, xa, args.steps)
        rows.append(("train P (Auto)", cost, auto_steps, "steps"))
    xs, _, ys = batch(p["TARGET_BATCH_SIZE"])
    m_steps = -(-n_fit // p["TARGET_BATCH_SIZE"])
    fresh_target = models.build(p["TARGET_MODEL"], shape, classes)  # M inside M∘P is frozen
    cost = seconds_per_step(lambda m, a, b: torch.nn.functional.cross_entropy(m(a), b), fresh_target,
                            fresh_target.parameters(), xs, ys, args.steps)
    rows.append(("train M", cost, p["TARGET_EPOCHS"] * m_steps, "steps"))
    if "stack" in p["APPROACHES"]:
        cost = seconds_per_step(lu.stack_loss, stack, stack.parameters(), xs, ys, args.steps)
        rows.append(("train Stack", cost, p["STACK_EPOCHS"] * m_steps, "steps"))

    preset = lx.attack_preset(p["DATASET"])
    xp, _, yp = batch(args.points)
    n_models = len(p["APPROACHES"])
    iterative = {k: v for k, v in {"steps": p["ITER_STEPS"], "step_size": p["ITER_STEP_SIZE"]}.items() if v is not None}
    fig2 = {"fgsm": {}, "pgd": iterative, "mim": iterative,
            "mim_l2": {k: v for k, v in {"steps": p["ITER_STEPS"], "step_size": p["MIM_L2_STEP_SIZE"]}.items()
                       if v is not None}}
    for attack in p["CHARACTERISATION_ATTACKS"]:
        cost = seconds_per_point(augmented, attack, xp, yp, preset, {**fig2.get(attack, {}), "eps": 0.3})
        rows.append((f"Fig. 2 {attack}", cost, n_models * len(p["LURING_EPS"]) * p["N_ATTACK"],
                     f"points x {n_models} M∘P x {len(p['LURING_EPS'])} ε"))
    n_def = min(p["N_DEFENSE_POINTS"] or p["N_ATTACK"], p["N_ATTACK"])
    defense_eps = p["DEFENSE_EPS"] or p["LURING_EPS"]
    table = {"spsa": {k: v for k, v in {"steps": p["SPSA_STEPS"], "samples": p["SPSA_SAMPLES"]}.items() if v is not None},
             "eco": {"max_queries": p["ECO_QUERIES"]} if p["ECO_QUERIES"] else {}}
    mim_w = {k: v for k, v in {"steps": p["MIM_W_STEPS"], "step_size": p["ITER_STEP_SIZE"]}.items() if v is not None}
    table.update({variant: mim_w for variant in lx.MIM_W_VARIANTS})
    for attack, settings in table.items():
        # the notebook's cache answers a Tables 1/14 call that Fig. 2 already made (same points, ε and settings)
        repeated = attack in fig2 and settings == fig2[attack] and n_def == p["N_ATTACK"]
        eps_run = [e for e in defense_eps if not (repeated and e in p["LURING_EPS"])]
        if not eps_run:
            continue
        cost = seconds_per_point(augmented, attack, xp, yp, preset, {**settings, "eps": 0.3})
        rows.append((f"Tables 1/14 {attack}", cost, n_models * len(eps_run) * n_def,
                     f"points x {n_models} M∘P x {len(eps_run)} ε"))
    cw = {"max_iter": p["CW_MAX_ITER"], "binary_search_steps": p["CW_BINARY_STEPS"]}
    cost = seconds_per_point(augmented, "cw2", xp, yp, preset, cw)
    rows.append(("Table 9 cw2", cost, (n_models + 1) * min(p["N_CW"], p["N_ATTACK"]), f"points x {n_models + 1} models"))

    print(f"notebook 30 on preset {args.preset!r}: {n_train} training images, {torch.get_num_threads()} torch threads; "
          f"unit costs timed on {args.points} points / {args.steps} steps")
    print(f"{'part':<24}{'s per unit':>12}{'count':>10}  {'unit':<28}{'estimate min':>13}")
    total = 0.0
    for part, cost, count, unit in rows:
        total += cost * count
        print(f"{part:<24}{cost:>12.4f}{count:>10}  {unit:<28}{cost * count / 60:>13.1f}")
    training = sum(cost * count for part, cost, count, _ in rows if part.startswith("train"))
    print(f"training {training / 3600:.2f} h, attacks {(total - training) / 3600:.2f} h, total {total / 3600:.2f} h "
          "(one notebook alone on the machine)")


if __name__ == "__main__":
    main()
