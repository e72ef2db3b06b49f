"""Neural Fingerprinting's parameters (Dathathri et al., "Detecting Adversarial Examples via Neural
Fingerprinting", 2018) and those of notebook 40 and of notebook 41's sweeps, as data."""
from __future__ import annotations

from decoylab.specs.base import boolean, choice, integer, list_of, number
from decoylab.specs.common import COUNT, FPR, RATE, SHARED, TRAINING, UNIT
from decoylab.specs.honeymodels import JSMA_GAMMA

DX_MODES = ("positive", "symmetric")
DY_SIGNS = ("code", "paper")
#: Table 1's attacks, by the paper's names.
PAPER_ATTACKS = ("FGM", "JSMA", "BIM-a", "BIM-b", "CW-L2")
ATTACK_LABELS = list_of(choice(PAPER_ATTACKS))

N_FINGERPRINTS = COUNT
FP_EPS = UNIT
TAU = number(0, optional=True)
WEIGHT = RATE
DX_MODE = choice(DX_MODES)
DY_SIGN = choice(DY_SIGNS)
FP_SEED = integer(0, optional=True)
#: Added to the images before the net (−0.5: the authors' [−0.5, 0.5] inputs); within one image range of 0.
INPUT_OFFSET = number(-1, 1)

#: Settings of the paper's attacks that notebooks 40 and 41 share.
PAPER_ATTACK_SETTINGS = {"N_PRETEST": COUNT, "JSMA_GAMMA": JSMA_GAMMA, "CW_MAX_ITER": COUNT, "CW_BINARY_STEPS": COUNT,
                         "CW_LR": RATE, "CW_INITIAL_CONST": RATE}

NOTEBOOKS = {
    "40_neural_fingerprinting": {**SHARED, **TRAINING, **PAPER_ATTACK_SETTINGS, "N_FINGERPRINTS": N_FINGERPRINTS,
                                 "FP_EPS": FP_EPS, "DX_MODE": DX_MODE, "DY_SIGN": DY_SIGN, "RANDOM_SIGN": boolean(),
                                 "FP_WEIGHT": WEIGHT, "FP_SEED": FP_SEED, "N_ADAPTIVE": COUNT,
                                 "ADAPTIVE_WEIGHT": RATE, "FPR": FPR, "TAU": TAU},
}
#: Notebook 41's fingerprint sweeps (its overlay's parameters are in ``specs.compare``).
SWEEPS = {"DX_MODE": DX_MODE, "DY_SIGN": DY_SIGN, "FP_WEIGHT": WEIGHT, "N_GRID": list_of(integer(1)),
          "EPS_GRID": list_of(UNIT), "N_FINGERPRINTS": N_FINGERPRINTS, "FP_EPS": FP_EPS,
          "N_FINGERPRINT_SETS": COUNT, "SWEEP_SETS": COUNT, "TREND_EPOCHS": list_of(integer(1), non_empty=False),
          "INPUT_OFFSETS": list_of(INPUT_OFFSET, non_empty=False),
          "SWEEP_ATTACKS": ATTACK_LABELS, **PAPER_ATTACK_SETTINGS}
