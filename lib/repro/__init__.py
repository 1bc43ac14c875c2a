"""repro: the shared library of the executable paper reproductions."""
__version__ = "0.1.0"

from .claims import Claims, ClaimsFailed  # noqa: E402
from .runtime import Config, PresetError, setup  # noqa: E402

__all__ = ["Claims", "ClaimsFailed", "Config", "PresetError", "setup", "__version__"]
