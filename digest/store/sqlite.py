"""sqlite-utils, imported without numpy: the store's one way to it.

sqlite-utils imports numpy whenever it is installed, only to map numpy scalar
types to column types; the store never hands it one (the relevance model's
arrays are stored as bytes).  numpy came with the relevance model (issue 17)
and costs 50-100 ms to import: hidden here, every command that opens the store
starts without it, and what needs numpy imports it as usual.
"""

import sys

_hidden = "numpy" not in sys.modules and "sqlite_utils" not in sys.modules
if _hidden:
    sys.modules["numpy"] = None  # type: ignore[assignment]  # import numpy: ImportError
try:
    from sqlite_utils import Database, Migrations
finally:
    if _hidden:
        del sys.modules["numpy"]

__all__ = ["Database", "Migrations"]
