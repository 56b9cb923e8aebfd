"""OmniMind: a Celery worker farm that serves PyTorch models and learns online.

``celery -A omnimind worker -Q inference`` finds the Celery app here (the usual
Celery layout: the app is defined in ``omnimind/app.py`` and re-exported).
"""
from __future__ import annotations

__version__ = "0.1.0"

from omnimind.app import app  # noqa: E402

celery = app
__all__ = ["app", "celery", "__version__"]
