"""Injected Attractors' parameters (J. Zhang, E.-C. Chang, H. K. Lee, "Detection and Recovery of Adversarial
Attacks with Injected Attractors") and those of notebooks 20-21, as data."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from decoylab.specs.base import boolean, choice, integer, list_of, number
from decoylab.specs.common import COUNT, FPR_LIST, SHARED, TRAINING, UNIT

PIXEL_LEVELS = 255.0
MAX_INTERVAL = PIXEL_LEVELS / 1.5  # a quantisation interval wider than this has only one codeword in [0, 255]
CODEWORDS = ("lattice", "in_range")
#: How §V-E's per-pixel distance q is measured: in pixel values (divided by the largest interval, so that Q lies in
#: [0, 1] for the lattice) or in units of the pixel's own interval δᵢ (the kit's choice before issue 30).
DISTANCE_UNITS = ("pixel", "interval")
#: Table VII's attacks (keys of ``experiments.attractors``' attack table).
TABLE_ATTACKS = ("fgsm", "rfgsm", "bim", "pgd", "umifgsm", "uap", "deepfool", "optmargin", "bpda", "spsa", "llc", "rllc",
                 "illc", "tmifgsm", "jsma", "blb", "cw2", "ead")

INTERVALS = list_of(number(0.0, MAX_INTERVAL, low_open=True))
INTERVAL_WEIGHTS = list_of(number(0.0), extra=lambda v: sum(v) > 0, extra_allowed="with a positive sum")
STRENGTH = number(0.0, low_open=True)  # A2 of eq. 3
KEY_SEED = integer(0, optional=True)
A0 = number(0.0, low_open=True)  # eq. 3; A0 < 1 + A1 as well (``defenses.attractors.check_decoder_settings``)
A1 = number(0.0)
CODEWORD_SET = choice(CODEWORDS)
DISTANCE_UNIT = choice(DISTANCE_UNITS)
ATTACK = choice(TABLE_ATTACKS)
ATTACK_LIST = list_of(ATTACK)
ITERATION_CAP = integer(1, optional=True)
BINARY_STEPS_CAP = integer(1, optional=True)
SAMPLES_CAP = integer(2, optional=True)
INITIAL_CONST = number(0.0, low_open=True, optional=True)

_DECODER = {"INTERVALS": INTERVALS, "INTERVAL_WEIGHTS": INTERVAL_WEIGHTS, "STRENGTH": STRENGTH, "KEY_SEED": KEY_SEED,
            "DISTANCE_UNIT": DISTANCE_UNIT}

NOTEBOOKS = {
    "20_attractors": {**SHARED, **TRAINING, **_DECODER, "CODEWORDS": CODEWORD_SET, "N_ATTACK": COUNT,
                      "N_CALIBRATION": integer(10), "ATTACKS": ATTACK_LIST, "ITERATION_CAP": ITERATION_CAP,
                      "BINARY_STEPS_CAP": BINARY_STEPS_CAP, "SAMPLES_CAP": SAMPLES_CAP, "INITIAL_CONST": INITIAL_CONST,
                      "FPRS": FPR_LIST, "INTEGRATED": boolean(), "CONTROL_EPS": list_of(UNIT, non_empty=False),
                      "DEFINITION_EPS": list_of(UNIT, non_empty=False)},
    "21_kde_gradient_analysis": {**{k: v for k, v in SHARED.items() if k != "N_TEST"}, **TRAINING, **_DECODER, "N_KDE": COUNT, "N_DENSITY": COUNT,
                                 "DENSITY_SAMPLES": integer(2), "DENSITY_RADIUS": number(0.0, low_open=True),
                                 "TRAPDOOR_AMPLITUDE": UNIT, "N_TRAPDOOR_ATTACK": COUNT},
}


def weights_match_intervals(values: Mapping[str, Any]) -> list[str]:
    """One weight α per interval size δ."""
    intervals, weights = values.get("INTERVALS"), values.get("INTERVAL_WEIGHTS")
    if isinstance(intervals, (list, tuple)) and isinstance(weights, (list, tuple)) and len(weights) != len(intervals):
        return [f"INTERVAL_WEIGHTS={weights!r} is not allowed; give one weight per interval size ({len(intervals)})"]
    return []


RULES: dict[str, list[Callable[[Mapping[str, Any]], list[str]]]] = {
    notebook: [weights_match_intervals] for notebook in NOTEBOOKS}
