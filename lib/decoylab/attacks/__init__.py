"""One registry of attacks: ``attacks.run(name, model, x, y, ...)``.

Backends: ``fast`` (batched torch, any device) and ``art`` (Adversarial Robustness Toolbox).
"""
from decoylab.attacks.core import BPDA, AttackResult, accepted, catalogue, catalogue_entry, names, run

__all__ = ["BPDA", "AttackResult", "accepted", "catalogue", "catalogue_entry", "names", "run"]
