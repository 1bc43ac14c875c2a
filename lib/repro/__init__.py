"""repro: the shared library of the executable paper reproductions.

`repro.core` holds what two or more themes use; `repro.<theme>` (one package per folder of
notebooks/) the code of that theme's papers; `repro.harness` the command line that runs notebooks.
A notebook needs `repro.setup` and `repro.Claims` from here, and imports the rest by module.
"""
__version__ = "0.1.0"

from .core import cpu  # noqa: E402

cpu.pin_vector_dispatch()  # before numpy and torch are first imported, below

from .core.claims import Claims, ClaimsFailed  # noqa: E402
from .core.presets import PresetError  # noqa: E402
from .core.runtime import Config, setup  # noqa: E402

__all__ = ["Claims", "ClaimsFailed", "Config", "PresetError", "setup", "__version__"]
