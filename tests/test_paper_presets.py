"""The paper presets on stand-in files in each data set's real on-disk format (issue 27): a notebook of ``paper``,
``paper-cifar10`` or ``paper-svhn`` runs with the preset's own data set, models and settings, only the sizes scaled
down (training images, epochs, attacked images, iterations: the tiny preset's values, capped further where
``HEAVY_ON_CPU`` says), on MNIST's raw idx files, CIFAR-10's pickle batches and SVHN's .mat files written by
``standins``. So the 3x32x32 code paths (ResNet-20 HoneyModels, QIM on three channels, Luring's CIFAR/SVHN
components, NeuralFP's CIFAR net) and the MNIST download path run without a GPU or a download. CI runs ``IN_CI``;
``DECOYLAB_PAPER_TIER=all`` runs every notebook of every paper preset. Last run in full 2026-12-03, its failures
re-run 2026-12-04 (paper-cifar10's 30_luring with the settings of LURING_CIFAR10, 2026-12-04)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import standins
from decoylab.tools import runner

ROOT = Path(__file__).resolve().parents[1]
# Only sizes and budgets come from the tiny preset: images, epochs, steps, iterations, queries, samples, sweep
# grids, and how many attacks run (the attack lists: the tier checks the code paths on each format, and all 18 of
# notebook 20's attacks on 3x32x32 would not fit CI's minutes). Every other setting (FP_EPS, Luring's ε and P's
# learning rates and initialisation, CW's constants, the training learning rate) is the paper preset's own (its
# YAML over the notebook's defaults), unless HEAVY_ON_CPU names it with the reason.
SIZE_KEY = re.compile(r"^N_|_N_|_N$|EPOCHS|STEPS|MAX_ITER$|QUERIES|SAMPLES|CAP$|GRID$|_SETS$|DRAWS|PERMUTATIONS|RESTARTS|"
                      r"MULTIPLIERS|JSMA_GAMMA|BATCH_SIZE|SAMPLE_SIZE|ATTACKS$|^CONTROL_EPS$|^DEFINITION_EPS$|"
                      r"^INTERACTIVE$")
CAPS = {"N_TRAIN": 600, "N_TEST": 200}  # the stand-ins hold 600 training and 200 test images
EPOCH_CAP = 2
# Sizes that are still too large on 3x32x32 images for CI's 2 cores even at the tiny preset's values (measured:
# Luring's five CIFAR networks on 600 images took 583 s to train; JSMA's pair search over 3072 features at
# γ 0.05 ran past 15 minutes on 40 images): fewer images, a shorter JSMA, one epoch of P. And where the tiny
# preset's sizes are too small for the paper preset's own settings on stand-ins: MNIST's P starts random
# (Algorithm 1) and needs more than two epochs of 600 images; the overlay's HoneyModel detector needs successful
# examples on both sides of its split, and its Luring contender an M∘P above chance.
LURING_3CH = {"N_TRAIN": 150, "COMPONENT_EPOCHS": 1, "N_ATTACK": 10, "N_CW": 4, "N_LOGIT_ANALYSIS": 10,
              "ECO_QUERIES": 50, "SPSA_STEPS": 2, "MIM_W_STEPS": 2, "ITER_STEPS": 3}
# Luring on CIFAR-10's stand-ins: with LURING_3CH (5 steps of M at batch 32, P at the paper's lr 1e-5, meant for 216
# epochs of 50 000 images) M and every M∘P were at chance and the notebook stopped at its chance-level guard. Why, by
# experiment (150 images, 2026-12-04): the networks learn, but their BatchNorm running statistics do not settle in so
# few steps. M after 20 steps at batch 32 (on the stand-in files with a class-coded tint added, which it learns easily)
# was at 0.10 in eval mode, 0.97 with batch statistics and 0.99 once they were re-estimated (kept as
# docs/experiments/luring_standin_batchnorm.py, whose own stand-ins give 0.30, 0.70, 0.70); C_E's P after 34 steps at
# lr 1e-3, eval 0.10, batch statistics 0.40. So: smaller batches (more steps for the same images),
# P at lr 1e-3, and 6 epochs of P, which keep the paper's two lr drops (epochs 154 and 185 of 216 -> 4 and 5 of 6), so
# P's weights are nearly still for its last two epochs and its statistics catch up: M 0.55, Stack 0.40, C_E 0.41,
# Luring 0.52, 60 of 200 test points right for all (about 7 minutes of training on 2 cores).
LURING_CIFAR10 = {**LURING_3CH, "TARGET_EPOCHS": 4, "TARGET_BATCH_SIZE": 8, "STACK_EPOCHS": 4, "COMPONENT_EPOCHS": 6,
                  "COMPONENT_BATCH_SIZE": 8, "COMPONENT_LR": 1e-3}
HEAVY_ON_CPU = {
    ("paper-cifar10", "30_luring"): LURING_CIFAR10, ("paper-svhn", "30_luring"): LURING_3CH,
    # at 10 epochs of P and the tiny preset's one Stack epoch, Stack was at chance (0.10) and Auto at 0.30 on MNIST's
    # stand-ins, and no test point was right for all of them (2026-12-04)
    ("paper", "30_luring"): {"COMPONENT_EPOCHS": 20, "STACK_EPOCHS": 4},
    ("paper-cifar10", "40_neural_fingerprinting"): {"N_PRETEST": 16, "JSMA_GAMMA": 0.002, "N_ADAPTIVE": 6},
    # the overlay's six networks at 2 epochs (10 steps on 600 images) were at 8-23 % on CIFAR-10's stand-ins, and
    # fewer than 10 pool images were right for all of them; at 8 epochs of P Luring's M∘P was still at 22 %, at 20
    # the case passes (2096 s beside another case, 2026-12-04)
    ("paper-cifar10", "41_roc_curves"): {"N_PRETEST": 24, "JSMA_GAMMA": 0.002, "OVERLAY_EPOCHS": 8,
                                         "LURING_COMPONENT_EPOCHS": 20},
    ("paper", "41_roc_curves"): {"OVERLAY_N_DETECTOR_FIT": 70, "OVERLAY_PGD_STEPS": 20, "LURING_COMPONENT_EPOCHS": 10},
    ("paper", "90_defense_comparison"): {"N_DETECTOR_FIT": 70, "PGD_STEPS": 20, "LURING_COMPONENT_EPOCHS": 10},
}
WRITERS = {"paper": standins.write_mnist_raw, "paper-cifar10": standins.write_cifar10,
           "paper-svhn": standins.write_svhn}
ALL_CASES = [(preset, path.stem) for preset in WRITERS for path in sorted((ROOT / "params" / preset).glob("*.yaml"))]
# Measured on the 2-core machine, two notebooks at a time (2026-12-03, seconds per notebook): paper-cifar10 00 8, 10 57,
# 11 38, 12 58, 20 12, 40 57; paper 40 10. These run in CI (about 2 minutes of wall clock on 2 workers). Luring on
# CIFAR-10 (505 s: its VGG and P networks, even on 150 images) and on SVHN (164 s), and notebook 41's sweeps, run
# with DECOYLAB_PAPER_TIER=all.
IN_CI = {("paper-cifar10", name) for name in ("00_tour", "10_honeymodels", "11_poison_sweep", "12_mmd_bootstrap",
                                              "20_attractors", "40_neural_fingerprinting")}
IN_CI |= {("paper", "00_tour"), ("paper", "40_neural_fingerprinting")}
CASES = ALL_CASES if os.environ.get("DECOYLAB_PAPER_TIER") == "all" else sorted(IN_CI)


def scaled_down(preset: str, notebook: str) -> dict:
    """The preset's file for ``notebook`` with every size and budget (``SIZE_KEY``) taken from the tiny preset and
    capped; the rest is the paper preset's."""
    paper = yaml.safe_load((ROOT / "params" / preset / f"{notebook}.yaml").read_text())
    tiny = yaml.safe_load((ROOT / "params" / "tiny" / f"{notebook}.yaml").read_text())
    merged = {**paper, **{k: v for k, v in tiny.items() if SIZE_KEY.search(k)}}
    declared = runner._declared(ROOT / "notebooks" / f"{notebook}.ipynb")
    for key, cap in CAPS.items():
        if key in declared:  # not every notebook has a test-split size
            merged[key] = min(merged.get(key) or cap, cap)
    for key, value in merged.items():
        if key.endswith("EPOCHS") and isinstance(value, int):
            merged[key] = min(value, EPOCH_CAP)
        if key.endswith("_STEPS") and key.startswith(("COMPONENT", "AUTO")) and value:
            merged[key] = min(value, 400)
    merged.update(HEAVY_ON_CPU.get((preset, notebook), {}))
    if merged.get("COMPONENT_LR_DROPS"):
        merged.update(scaled_lr_drops(paper, merged))
    merged["INTERACTIVE"] = False
    return merged


def scaled_lr_drops(paper: dict, merged: dict) -> dict:
    """Luring's P schedule (the lr drops at 70 % and 90 % of training, in steps or epochs as the budget counts) moved
    to the same fractions of the scaled-down budget; left out (a constant lr) where the budget is too short to hold
    the drops apart and before its end."""
    def budget(values):
        return ("COMPONENT_STEPS", values["COMPONENT_STEPS"]) if values.get("COMPONENT_STEPS") else \
            ("COMPONENT_EPOCHS", values["COMPONENT_EPOCHS"])
    _, full = budget(paper)
    _, short = budget(merged)
    drops = [round(d / full * short) for d in paper["COMPONENT_LR_DROPS"]]
    if drops[0] < 1 or drops[-1] >= short or len(set(drops)) < len(drops):
        return {"COMPONENT_LR_DROPS": [], "COMPONENT_LR_VALUES": []}
    return {"COMPONENT_LR_DROPS": drops}


def test_the_tier_takes_sizes_from_the_tiny_preset_and_keeps_every_other_setting():
    """The rule that splits a preset's keys: budgets and sizes are scaled down, settings stay the paper's."""
    sizes = ["N_TRAIN", "N_ATTACK", "EPOCHS", "COMPONENT_STEPS", "ITER_STEPS", "CW_MAX_ITER", "ITERATION_CAP",
             "ECO_QUERIES", "SPSA_SAMPLES", "N_GRID", "SWEEP_SETS", "N_FINGERPRINT_SETS", "ATTACKS", "SWEEP_ATTACKS",
             "SAMPLE_SIZE", "BATCH_SIZE", "JSMA_GAMMA", "CONTROL_EPS"]
    settings = ["FP_EPS", "LURING_EPS", "ITER_STEP_SIZE", "MIM_L2_STEP_SIZE", "INPUT_OFFSETS", "CW_LR",
                "CW_INITIAL_CONST", "INITIAL_CONST", "LR", "COMPONENT_LR", "COMPONENT_INIT", "DENSITY_RADIUS",
                "LURING_WEIGHT", "DATASET", "MODEL"]
    assert [k for k in sizes if not SIZE_KEY.search(k)] == []
    assert [k for k in settings if SIZE_KEY.search(k)] == []
    cifar = scaled_down("paper-cifar10", "40_neural_fingerprinting")
    assert cifar["FP_EPS"] == 0.006 and cifar["N_TRAIN"] <= CAPS["N_TRAIN"]
    # P's lr drops follow its budget: MNIST's at 35 000 and 45 000 of 50 000 steps -> 70 % and 90 % of 20 epochs;
    # CIFAR-10's 154 and 185 of 216 epochs -> 4 and 5 of 6, with the paper's lr values after them; SVHN's one epoch
    # cannot hold two drops before its end -> a constant lr
    mnist = scaled_down("paper", "30_luring")
    assert (mnist["COMPONENT_STEPS"], mnist["COMPONENT_EPOCHS"], mnist["COMPONENT_LR_DROPS"]) == (None, 20, [14, 18])
    cifar = scaled_down("paper-cifar10", "30_luring")
    assert (cifar["COMPONENT_LR_DROPS"], cifar["COMPONENT_LR_VALUES"]) == ([4, 5], [5.0e-6, 8.0e-7])
    assert scaled_down("paper-svhn", "30_luring")["COMPONENT_LR_DROPS"] == []


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin-data")
    standins.write_mnist_raw(root, n_train=600, n_test=200)
    standins.write_cifar10(root, per_batch=120, n_test=200)
    standins.write_svhn(root, n_train=600, n_test=200)
    return root, tmp_path_factory.mktemp("standin-cache")


@pytest.mark.slow
@pytest.mark.parametrize("preset,notebook", CASES)
def test_paper_preset_notebook_runs_on_stand_in_files(preset, notebook, stand_ins, tmp_path, monkeypatch):
    data_root, cache = stand_ins
    monkeypatch.setenv("DECOYLAB_DATA", str(data_root))
    monkeypatch.setenv("DECOYLAB_CACHE", str(cache))
    params = tmp_path / "params" / preset
    params.mkdir(parents=True)
    settings = scaled_down(preset, notebook)
    (params / f"{notebook}.yaml").write_text(yaml.safe_dump(settings))
    lines = []
    code = runner.run(preset=preset, notebooks=[notebook], notebooks_dir=ROOT / "notebooks",
                      params_dir=tmp_path / "params", runs_dir=tmp_path / "runs", log=lines.append)
    assert code == 0, "\n".join(lines)
    doc = json.loads((tmp_path / "runs" / preset / notebook / "results.json").read_text())
    # a notebook records numbers, claim verdicts or both (notebook 12 on stand-ins whose attacks all fail: claims)
    assert doc["status"] == "ok" and (doc["results"] or doc["claims"]), f"{preset}/{notebook} recorded nothing"


@pytest.mark.slow
def test_luring_cifar_target_learns_before_its_batchnorm_statistics_settle():
    """The experiment behind LURING_CIFAR10 (``docs/experiments/luring_standin_batchnorm.py``): after 20 steps M
    scores far lower in eval mode than its weights do with batch statistics or with the running statistics
    re-estimated (2026-12-04: 0.30, 0.70, 0.70). If re-estimating the statistics did not lift it, the tier's
    explanation of its chance-level failure would be wrong."""
    script = ROOT / "docs" / "experiments" / "luring_standin_batchnorm.py"
    out = subprocess.run([sys.executable, str(script), "--epochs", "4", "--batch-size", "32"], capture_output=True,
                         text=True, check=True).stdout
    scores = {name: float(value) for name, value in
              (line.strip().rsplit(None, 1) for line in out.splitlines() if line.startswith("  "))}
    lag = scores["eval mode, statistics re-estimated"] - scores["eval mode (running statistics)"]
    assert lag >= 0.3 and scores["batch statistics"] - scores["eval mode (running statistics)"] >= 0.3, out
    bad = subprocess.run([sys.executable, str(script), "--epochs", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--epochs must be >= 1, got 0" in bad.stderr
