"""OmniMind: a Celery worker farm that serves PyTorch models and learns online.

``celery -A omnimind worker -Q inference`` finds the Celery app here (the usual
Celery layout: the app is defined in ``omnimind/app.py`` and re-exported). Importing
the package builds nothing: ``app`` (alias ``celery``) is built on first access
(PEP 562), as Celery's own ``celery/__init__.py`` defers its attributes.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["app", "celery", "__version__"]


def __getattr__(name: str) -> Any:
    # Once the submodule ``omnimind.app`` is imported, the attribute ``app`` is that module
    # (the import system sets it); ``celery -A omnimind`` then finds the app as ``celery``.
    if name in ("app", "celery"):
        from omnimind.app import get_app

        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
