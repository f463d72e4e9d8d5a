"""Imports geoopt without letting its TorchScript deprecation warnings reach the user."""

import warnings

with warnings.catch_warnings():
    # geoopt 0.5.1 decorates dozens of functions with torch.jit.script at import time and current
    # torch emits one DeprecationWarning per decoration. Only that message is filtered, and only
    # while geoopt's modules execute; every other warning keeps the user's filters.
    warnings.filterwarnings(
        "ignore",
        message=r".*torch\.jit\.script.* is deprecated",
        category=DeprecationWarning,
    )
    import geoopt  # noqa: E402

__all__ = ["geoopt"]
