"""Abstract base of drift-detection methods (OmniMind's CUSUM and river's detectors)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping

__all__ = ["DriftMethod"]


class DriftMethod(ABC):
    """One detector over a stream of scalar errors.

    ``update(error) -> bool`` returns True on the sample where drift is declared;
    the method then restarts on the new concept by itself.

    >>> class Never(DriftMethod):
    ...     name = "never"
    ...     def update(self, error): return False
    ...     def _reset(self): pass
    ...     def state_dict(self): return {}
    ...     def load_state_dict(self, state): pass
    >>> Never().update(3.0), Never().in_warning
    (False, False)
    """

    name: str = "abstract"

    @abstractmethod
    def update(self, error: float) -> bool:
        """Feed one error; True when drift is detected at this sample."""

    @abstractmethod
    def _reset(self) -> None:
        """Rebuild private state (forget the current concept)."""

    @property
    def in_warning(self) -> bool:
        """True while a change is suspected but not yet confirmed."""
        return False

    @abstractmethod
    def state_dict(self) -> dict:
        """JSON-able state for checkpoints."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
