"""The comparison's test splits (notebooks 41 and 90): calibration, detector-fit and attacked images are disjoint,
and the attacked ones are images every contender classifies correctly, so a success rate means the same thing for
every defense."""
from __future__ import annotations

import torch


def comparison_splits(num_test: int, *, n_calibration: int, n_detector_fit: int, n_attack: int,
                      seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three disjoint, seeded index sets of the test split: calibration (thresholds), detector-fit
    (HoneyModels' detector and the adaptive attacker's own data) and the attack pool (everything
    else, from which the attacked images are drawn)."""
    needed = n_calibration + n_detector_fit + n_attack
    if needed > num_test:
        raise ValueError(f"n_calibration + n_detector_fit + n_attack = {needed} but the test split has only "
                         f"{num_test} images; lower N_CALIBRATION, N_DETECTOR_FIT or N_ATTACK")
    order = torch.randperm(num_test, generator=torch.Generator().manual_seed(seed))
    return order[:n_calibration], order[n_calibration:n_calibration + n_detector_fit], order[n_calibration + n_detector_fit:]


def correct_everywhere(contenders: dict, x: torch.Tensor, y: torch.Tensor, minimum: int = 10) -> torch.Tensor:
    """Mask of the images every contender (``compare.Contender``, by name) classifies right (the attacked images are drawn from
    them, so a success rate means the same thing for every defense); a clear error below ``minimum``."""
    from decoylab import train

    correct = {name: train.predict(c.classifier, x).argmax(1) == y for name, c in contenders.items()}
    everywhere = torch.stack(list(correct.values())).all(0)
    if int(everywhere.sum()) < minimum:
        raise RuntimeError(f"fewer than {minimum} pool images are classified correctly by every contender; pool "
                           "accuracy: " + ", ".join(f"{n} {float(v.float().mean()):.2f}" for n, v in correct.items())
                           + ". Train longer (EPOCHS, N_TRAIN) or leave the weakest defense out of DEFENSES.")
    return everywhere
