"""One module per paper behind one interface (``decoylab.defenses.base.Defense``)."""
from decoylab.defenses import fingerprints, honeymodels, luring
from decoylab.defenses.base import Defense, NotFittedError

__all__ = ["Defense", "NotFittedError", "fingerprints", "honeymodels", "luring"]
