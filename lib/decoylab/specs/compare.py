"""The comparison's parameters (notebook 90, and notebook 41's overlay of every defense), as data."""
from __future__ import annotations

from decoylab.specs.base import boolean, choice, integer, list_of, number
from decoylab.specs import fingerprints, honeymodels, luring
from decoylab.specs.common import COUNT, DATA_ROOT, DATASET, FPR_LIST, MODEL, RATE, SEED, SPLIT_SIZES, TRAINING

DEFENSES = ("undefended", "feature_squeezing", "honeymodels", "attractors", "luring", "fingerprints")
#: Keys of ``experiments.compare.COMPARISON_ATTACKS``; the L∞ ones have a budget the adaptive attacks can change.
ATTACKS = ("fgsm", "pgd", "cw2", "deepfool")
LINF_ATTACKS = ("fgsm", "pgd")
IMAGES = integer(10)  # fewer images give no usable threshold or ROC curve
#: The feature-squeezing baseline's squeezers (Xu, Evans, Qi, NDSS 2018): colour depth in bits, median window.
SQUEEZE_BIT_DEPTH = integer(1, 8)
MEDIAN_WINDOW = integer(2)

DEFENSE_LIST = list_of(choice(DEFENSES), extra=lambda v: "undefended" in v,
                       extra_allowed="including 'undefended' (every cost is measured against it)")
ATTACK_LIST = list_of(choice(ATTACKS))
#: The adaptive attacks' L∞ budget when it differs from the attack's own (data range (0, 1]), and the weights
#: of a defense-aware term the attacker tries.
ADAPTIVE_EPS = number(0.0, 1.0, low_open=True, optional=True)
ADAPTIVE_WEIGHTS = list_of(RATE)
#: Section 4c's checks that the adaptive attack is strong: multiples of its iterations, and PGD's random starts.
STRENGTH_STEP_MULTIPLIERS = list_of(integer(1, 64), extra=lambda v: len(set(v)) >= 2,
                                    extra_allowed="with at least two different multiples (convergence compares them)")
STRENGTH_RESTARTS = integer(1, 20)

#: The defenses' own settings in the comparison (same names in notebooks 41 and 90).
DEFENSE_SETTINGS = {"WATERMARK_SIZE": honeymodels.WATERMARK_SIZE, "POISON_PERCENT": honeymodels.POISON_PERCENT,
                    "ATTRACTOR_STRENGTH": number(0.0, low_open=True), "LURING_COMPONENT": luring.COMPONENT,
                    "LURING_COMPONENT_EPOCHS": COUNT, "LURING_COMPONENT_STEPS": integer(1, optional=True),
                    "LURING_COMPONENT_INIT": luring.COMPONENT_INIT}

NOTEBOOK_90 = {"DATASET": DATASET, "DATA_ROOT": DATA_ROOT, "N_TRAIN": integer(1, optional=True), **TRAINING,
               "DEFENSES": DEFENSE_LIST, "ATTACKS": ATTACK_LIST, "FPRS": FPR_LIST, "N_ATTACK": IMAGES,
               "N_CALIBRATION": IMAGES, "N_DETECTOR_FIT": IMAGES, "PGD_STEPS": COUNT, "CW_MAX_ITER": COUNT,
               "CW_BINARY_STEPS": COUNT, **DEFENSE_SETTINGS, "FP_N": fingerprints.N_FINGERPRINTS,
               "FP_EPS": fingerprints.FP_EPS, "ADAPTIVE_ATTACK": choice(ATTACKS),
               "ADAPTIVE_EPS": ADAPTIVE_EPS, "ADAPTIVE_RANDOM_START": boolean(),
               "ADAPTIVE_WEIGHTS": ADAPTIVE_WEIGHTS, "STRENGTH_STEP_MULTIPLIERS": STRENGTH_STEP_MULTIPLIERS,
               "STRENGTH_RESTARTS": STRENGTH_RESTARTS, "SEED": SEED, "INTERACTIVE": boolean()}

OVERLAY = {"OVERLAY_MODEL": MODEL, "OVERLAY_EPOCHS": COUNT, "OVERLAY_ATTACKS": ATTACK_LIST, "OVERLAY_N_ATTACK": IMAGES,
           "OVERLAY_N_CALIBRATION": IMAGES, "OVERLAY_N_DETECTOR_FIT": IMAGES, "OVERLAY_PGD_STEPS": COUNT,
           "OVERLAY_CW_MAX_ITER": COUNT, "OVERLAY_CW_BINARY_STEPS": COUNT, "OVERLAY_FP_N": fingerprints.N_FINGERPRINTS,
           **DEFENSE_SETTINGS}


def adaptive_rules(values) -> list[str]:
    """ADAPTIVE_ATTACK is one of ATTACKS; ADAPTIVE_EPS only with an L∞ attack."""
    found = []
    attacks, adaptive = values.get("ATTACKS", []), values.get("ADAPTIVE_ATTACK")
    if adaptive is not None and adaptive not in attacks:
        found.append(f"ADAPTIVE_ATTACK={adaptive!r} is not allowed; it must be one of ATTACKS {attacks}")
    if values.get("ADAPTIVE_EPS") is not None and adaptive not in LINF_ATTACKS:
        found.append(f"ADAPTIVE_EPS={values['ADAPTIVE_EPS']} is not allowed with ADAPTIVE_ATTACK={adaptive!r}, which has "
                     f"no L∞ budget; use an L∞ attack ({', '.join(LINF_ATTACKS)}) or leave ADAPTIVE_EPS null")
    return found


def _disjoint_test_images(prefix: str):
    """A rule: calibration, detector-fit and attacked images are disjoint parts of the test split
    (``experiments.compare.comparison_splits``), so together they must fit in it."""
    keys = tuple(f"{prefix}{k}" for k in ("N_CALIBRATION", "N_DETECTOR_FIT", "N_ATTACK"))

    def images_fit_the_test_split(values) -> list[str]:
        sizes = SPLIT_SIZES.get(values.get("DATASET"))
        counts = [values.get(k) for k in keys]
        if not sizes or not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            return []
        if sum(counts) <= sizes[1]:
            return []
        return [f"{' + '.join(keys)} = {' + '.join(map(str, counts))} = {sum(counts)} is not allowed; they are disjoint "
                f"parts of {values['DATASET']}'s test split, which has {sizes[1]} images"]
    return images_fit_the_test_split


NOTEBOOKS = {
    "90_defense_comparison": NOTEBOOK_90,
    "41_roc_curves": {"DATASET": DATASET, "DATA_ROOT": DATA_ROOT, "N_TRAIN": integer(1, optional=True),
                      "N_TEST": integer(1, optional=True), **TRAINING, **fingerprints.SWEEPS, **OVERLAY,
                      "SEED": SEED, "INTERACTIVE": boolean()},
}
#: Rules that tie several parameters of one notebook together (checked on the notebook's defaults with the
#: preset's values on top).
RULES = {"90_defense_comparison": [adaptive_rules, _disjoint_test_images("")],
         "41_roc_curves": [_disjoint_test_images("OVERLAY_")]}
