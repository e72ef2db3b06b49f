"""One registry of attacks: ``attacks.run(name, model, x, y, ...)``.

Backends: ``fast`` (batched torch, any device) and ``art`` (Adversarial Robustness Toolbox).
"""
from decoylab.attacks.core import AttackResult, accepted, catalogue, catalogue_entry, names, run

__all__ = ["AttackResult", "accepted", "catalogue", "catalogue_entry", "names", "run"]
