"""gw core: the plugin system, the protocol-neutral model, the pipeline runner and the trio server.

Plugins import what they need from here: ``from gw import hookimpl`` and the base classes in
:mod:`gw.stage`, :mod:`gw.identity`, :mod:`gw.protocol` and :mod:`gw.store`.
"""

from .hookspecs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
__version__ = "0.1.0"
