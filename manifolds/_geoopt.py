"""Imports geoopt without letting its TorchScript deprecation warnings reach the user."""

import warnings

with warnings.catch_warnings():
    # geoopt 0.5.1 decorates dozens of functions with torch.jit.script at import time, and current
    # torch warns once per decoration: a DeprecationWarning under torch 2.13, a FutureWarning under
    # 2.14, maybe another category later. Only that message is filtered, whatever its category, and
    # only while geoopt's modules execute; every other warning keeps the user's filters.
    warnings.filterwarnings("ignore", message=r"`?torch\.jit\.script`? is deprecated", category=Warning)
    import geoopt  # noqa: E402

__all__ = ["geoopt"]
