"""Decoy Lab: reproduce, compare and break deception-based defenses against adversarial examples.

The library keeps the notebooks thin: data, models, training, caching, attacks,
defenses, metrics, plots and result recording live here.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("decoylab")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
