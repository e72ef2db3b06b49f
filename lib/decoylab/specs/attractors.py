"""Injected Attractors' parameters (Zhang et al., "Attack-Guided Adversarial Detection ... Injected
Attractors", 2021) and those of notebooks 20-21, as data."""
from __future__ import annotations

from decoylab.params import boolean, choice, integer, list_of, number
from decoylab.specs.common import COUNT, FPR_LIST, SHARED, TRAINING, UNIT

PIXEL_LEVELS = 255.0
MAX_INTERVAL = PIXEL_LEVELS / 1.5  # a quantisation interval wider than this has only one codeword in [0, 255]
CODEWORDS = ("lattice", "in_range")
#: Table VII's attacks (keys of ``experiments.attractors``' attack table).
TABLE_ATTACKS = ("fgsm", "rfgsm", "bim", "pgd", "umifgsm", "uap", "deepfool", "optmargin", "bpda", "spsa", "llc", "rllc",
                 "illc", "tmifgsm", "jsma", "blb", "cw2", "ead")

INTERVALS = list_of(number(0.0, MAX_INTERVAL, low_open=True))
INTERVAL_WEIGHTS = list_of(number(0.0))
STRENGTH = number(0.0, low_open=True)
KEY_SEED = integer(0, optional=True)
A0 = number(0.0, low_open=True)
A1 = number(0.0, low_open=True)

_DECODER = {"INTERVALS": INTERVALS, "INTERVAL_WEIGHTS": INTERVAL_WEIGHTS, "STRENGTH": STRENGTH, "KEY_SEED": KEY_SEED}

NOTEBOOKS = {
    "20_attractors": {**SHARED, **TRAINING, **_DECODER, "CODEWORDS": choice(CODEWORDS), "N_ATTACK": COUNT,
                      "N_CALIBRATION": integer(10), "ATTACKS": list_of(choice(TABLE_ATTACKS)),
                      "ITERATION_CAP": integer(1, optional=True), "BINARY_STEPS_CAP": integer(1, optional=True),
                      "SAMPLES_CAP": integer(2, optional=True),
                      "INITIAL_CONST": number(0.0, low_open=True, optional=True), "FPRS": FPR_LIST,
                      "INTEGRATED": boolean()},
    "21_kde_gradient_analysis": {**{k: v for k, v in SHARED.items() if k != "N_TEST"}, **TRAINING, **_DECODER, "N_KDE": COUNT, "N_DENSITY": COUNT,
                                 "DENSITY_SAMPLES": integer(2), "DENSITY_RADIUS": number(0.0, low_open=True),
                                 "TRAPDOOR_AMPLITUDE": UNIT, "N_TRAPDOOR_ATTACK": COUNT},
}
