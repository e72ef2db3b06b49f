"""HoneyModels' parameters (Abdou et al., "HoneyModels: Machine Learning Honeypots", MILCOM 2021) and those of
notebooks 10-12, as data; ``decoylab.defenses.honeymodels`` checks its arguments against the same objects."""
from __future__ import annotations

from decoylab.specs.base import choice, integer, list_of, number
from decoylab.specs.common import ATTACK_BACKEND, COUNT, SHARED, TRAINING

READINGS = ("perturbation", "raw")  # how Sim(W, Ŵ) reads the reconstructed watermark
SAMPLES = ("successful", "all")  # which adversarial examples a detector or MMD sees

WATERMARK_SIZE = number(0, 1, low_open=True)
AMPLITUDE = number(0, 1, low_open=True)
POISON_PERCENT = number(0, 100, high_open=True)
KEY_SEED = integer(0, optional=True)
JSMA_GAMMA = number(0, 1, low_open=True)
READING = choice(READINGS)
SAMPLE_KIND = choice(SAMPLES)
TEST_FRACTION = number(0, 1, low_open=True, high_open=True)  # the detector's held-out share of the images

_ATTACKED = {"N_ATTACK": COUNT, "JSMA_GAMMA": JSMA_GAMMA, "ATTACK_BACKEND": ATTACK_BACKEND}
_KEY = {"AMPLITUDE": AMPLITUDE, "KEY_SEED": KEY_SEED}

NOTEBOOKS = {
    "10_honeymodels": {**SHARED, **TRAINING, **_KEY, **_ATTACKED, "WATERMARK_SIZE": WATERMARK_SIZE,
                       "POISON_PERCENT": POISON_PERCENT, "RECONSTRUCTION": READING,
                       "DETECTOR_SAMPLES": SAMPLE_KIND, "NULL_KEYS": integer(1, 50)},
    "11_poison_sweep": {**SHARED, **TRAINING, **_KEY, **_ATTACKED, "POISON_GRID": list_of(POISON_PERCENT),
                        "POISON_SWEEP_SIZE": WATERMARK_SIZE, "SIZE_GRID": list_of(WATERMARK_SIZE),
                        "SIZE_SWEEP_POISON": POISON_PERCENT, "RECONSTRUCTION": READING,
                        "SCALE_N_TRAIN": list_of(integer(100), non_empty=False), "SCALE_STEPS": COUNT},
    "12_mmd_bootstrap": {**SHARED, **TRAINING, **_KEY, **_ATTACKED, "WATERMARK_SIZE": WATERMARK_SIZE,
                         "POISON_PERCENT": POISON_PERCENT, "MMD_SAMPLES": SAMPLE_KIND,
                         "SAMPLE_SIZE": integer(2), "DRAWS": COUNT, "PERMUTATIONS": COUNT},
}
