"""One module per paper behind one interface (``decoylab.defenses.base.Defense``)."""
from decoylab.defenses import attractors, feature_squeezing, fingerprints, honeymodels, luring
from decoylab.defenses.base import Defense, NotFittedError

__all__ = ["Defense", "NotFittedError", "attractors", "feature_squeezing", "fingerprints", "honeymodels", "luring"]
