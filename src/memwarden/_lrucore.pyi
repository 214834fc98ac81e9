"""Type stubs of the C extension memwarden._lrucore (see _lrucore.c and memwarden.cache)."""

from collections import OrderedDict
from typing import Any

class Getter:
    hits: int
    misses: int
    od: OrderedDict[Any, Any]
    def __init__(self, od: OrderedDict[Any, Any], hits: int = 0, misses: int = 0) -> None: ...
    def __call__(self, key: Any, default: Any = None, /) -> Any: ...
