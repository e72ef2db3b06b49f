"""One module per paper behind one interface (``decoylab.defenses.base.Defense``)."""
from decoylab.defenses import honeymodels
from decoylab.defenses.base import Defense, NotFittedError

__all__ = ["Defense", "NotFittedError", "honeymodels"]
