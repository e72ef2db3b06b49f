"""Luring's parameters (Bernhard, Moellic, Dutertre, "Luring of Transferable Adversarial Perturbations in
the Black-Box Paradigm", 2021) and those of notebook 30, as data."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from decoylab.specs.base import choice, integer, list_of, number
from decoylab.specs.common import COMPONENTS, COUNT, FPR, MODEL, OPTIONAL_COUNT, RATE, SHARED, UNIT

APPROACHES = ("stack", "auto", "ce", "luring")
SCORE_KINDS = ("margin", "kl")
COMPONENT_INITS = ("random", "auto")
TARGET_DATA = ("fit", "all")  # M trained without P's validation split (the authors' code), or on all of it
CHARACTERISATION_ATTACKS = ("fgsm", "pgd", "mim", "mim_l2")

APPROACH = choice(APPROACHES)
SCORE_KIND = choice(SCORE_KINDS)
WEIGHT = number(0.0, low_open=True)  # λ of eq. 2
EPS = UNIT  # an L∞ budget on [0, 1] images: the data range bounds it
VALIDATION_FRACTION = number(0.0, 0.5, low_open=True)
EPS_LIST = list_of(EPS)
COMPONENT = choice(COMPONENTS)
COMPONENT_INIT = choice(COMPONENT_INITS)
TARGET_DATA_CHOICE = choice(TARGET_DATA)
LR_DROPS = list_of(integer(1), non_empty=False)

NOTEBOOKS = {
    "30_luring": {**SHARED, "TARGET_MODEL": MODEL, "COMPONENT": COMPONENT, "TARGET_EPOCHS": COUNT,
                  "TARGET_BATCH_SIZE": COUNT, "TARGET_LR": RATE, "COMPONENT_STEPS": OPTIONAL_COUNT,
                  "COMPONENT_EPOCHS": COUNT, "COMPONENT_BATCH_SIZE": COUNT, "COMPONENT_LR": RATE,
                  "COMPONENT_LR_DROPS": LR_DROPS, "COMPONENT_LR_VALUES": list_of(RATE, non_empty=False),
                  "STACK_EPOCHS": COUNT, "AUTO_STEPS": OPTIONAL_COUNT, "LURING_WEIGHT": WEIGHT, "APPROACHES": list_of(APPROACH),
                  "COMPONENT_INIT": COMPONENT_INIT, "VALIDATION_FRACTION": VALIDATION_FRACTION,
                  "SCORE_KIND": SCORE_KIND, "N_ATTACK": COUNT, "N_DEFENSE_POINTS": OPTIONAL_COUNT,
                  "LURING_EPS": EPS_LIST, "DEFENSE_EPS": list_of(EPS, optional=True),
                  "CHARACTERISATION_ATTACKS": list_of(choice(CHARACTERISATION_ATTACKS)),
                  "ITER_STEPS": OPTIONAL_COUNT, "MIM_W_STEPS": OPTIONAL_COUNT, "ITER_STEP_SIZE": number(0, 1, low_open=True, optional=True),
                  "MIM_L2_STEP_SIZE": number(0, low_open=True, optional=True), "SPSA_STEPS": OPTIONAL_COUNT,
                  "SPSA_SAMPLES": integer(2, optional=True), "ECO_QUERIES": OPTIONAL_COUNT, "N_CW": COUNT,
                  "CW_MAX_ITER": COUNT, "CW_BINARY_STEPS": COUNT, "N_LOGIT_ANALYSIS": COUNT, "FPR": FPR},
}


def learning_rates_match_drops(values: Mapping[str, Any]) -> list[str]:
    """One learning rate per drop, or none (then each drop multiplies it by 0.2); drops in increasing order and
    inside the training (in steps when ``COMPONENT_STEPS`` is set, in epochs otherwise)."""
    drops, lrs = values.get("COMPONENT_LR_DROPS"), values.get("COMPONENT_LR_VALUES")
    found = []
    if isinstance(drops, (list, tuple)) and list(drops) != sorted(drops):
        found.append(f"COMPONENT_LR_DROPS={drops!r} is not allowed; give the drops in increasing order")
    if isinstance(drops, (list, tuple)) and isinstance(lrs, (list, tuple)) and lrs and len(lrs) != len(drops):
        found.append(f"COMPONENT_LR_VALUES={lrs!r} is not allowed; give one learning rate per drop "
                     f"({len(drops)}) or none")
    # The drops count steps when COMPONENT_STEPS is set, epochs otherwise: one beyond the training never happens
    steps, epochs = values.get("COMPONENT_STEPS"), values.get("COMPONENT_EPOCHS")
    length, unit = (steps, "COMPONENT_STEPS") if steps else (epochs, "COMPONENT_EPOCHS")
    if isinstance(drops, (list, tuple)) and isinstance(length, int) and any(d >= length for d in drops):
        found.append(f"COMPONENT_LR_DROPS={drops!r} is not allowed with {unit}={length!r}: the drops count "
                     f"{'steps' if steps else 'epochs'} and must each fall before the end of training")
    return found


RULES: dict[str, list[Callable[[Mapping[str, Any]], list[str]]]] = {"30_luring": [learning_rates_match_drops]}
