"""One registry of attacks: ``attacks.run(name, model, x, y, ...)``.

Backends: ``fast`` (batched torch, any device) and ``art`` (Adversarial Robustness Toolbox). Each
family module (``linf``, ``cw``, ``deepfool``, ``jsma``, ``query``) holds its attacks and their
registry entries; ``registry`` assembles them; ``core`` runs them.
"""
from decoylab.attacks.core import BPDA, AttackResult, run
from decoylab.attacks.registry import accepted, catalogue, catalogue_entry, checked_settings, names

__all__ = ["BPDA", "AttackResult", "accepted", "catalogue", "catalogue_entry", "checked_settings", "names", "run"]
