"""Versioned active model with shadow copies, atomic swap and rollback (seed: ``ModelVersionManager``)."""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass

from torch import nn

__all__ = ["ModelVersionManager", "ModelVersion"]


@dataclass(frozen=True)
class ModelVersion:
    """An immutable (model, version number) pair; swapping replaces the whole pair.

    >>> ModelVersion(nn.Identity(), 7).number
    7
    """

    model: nn.Module
    number: int


class ModelVersionManager:
    """Holds the active model; a swap is one reference assignment.

    Readers call :meth:`get_active_model` once per request and keep that
    reference, so an in-flight request finishes on the version it started with.
    ``version_counter`` is monotonic (the highest number ever issued); after a
    :meth:`rollback`, ``active_version`` is the restored version's number.

    >>> manager = ModelVersionManager(nn.Linear(2, 1))
    >>> old = manager.get_active_model()
    >>> shadow = manager.create_shadow_copy()
    >>> manager.swap_models()
    1
    >>> manager.get_active_model() is shadow, manager.version_counter
    (True, 1)
    >>> manager.rollback() is old, manager.active_version, manager.version_counter
    (True, 0, 1)
    """

    def __init__(self, base_model: nn.Module, *, history_size: int = 1, initial_version: int = 0) -> None:
        self.history_size = int(history_size)
        self._active = ModelVersion(base_model, int(initial_version))
        self._counter = int(initial_version)
        self._reset()

    def _reset(self) -> None:
        # Forgets rollback history and any shadow; the active model is kept.
        self._previous: deque[ModelVersion] = deque(maxlen=max(1, self.history_size))
        self._shadow: nn.Module | None = None

    # ----------------------------------------------------------------- results
    @property
    def active_model(self) -> nn.Module:
        """The model serving now."""
        return self._active.model

    @property
    def active_version(self) -> int:
        """Version number of the active model."""
        return self._active.number

    @property
    def version_counter(self) -> int:
        """Highest version number issued (monotonic; the seed's counter)."""
        return self._counter

    @property
    def shadow_model(self) -> nn.Module | None:
        """The copy from :meth:`create_shadow_copy` not yet swapped in, if any."""
        return self._shadow

    @property
    def previous_versions(self) -> tuple[int, ...]:
        """Version numbers kept for rollback, newest last."""
        return tuple(v.number for v in self._previous)

    def get_active_model(self) -> nn.Module:
        """The model serving now (take it once per request)."""
        return self._active.model

    # ------------------------------------------------------------- operations
    def create_shadow_copy(self) -> nn.Module:
        """A deep copy of the active model to train off the serving path."""
        self._shadow = copy.deepcopy(self._active.model)
        return self._shadow

    def swap_models(self, new_model: nn.Module | None = None) -> int:
        """Make ``new_model`` (default: the shadow copy) active; returns its version number."""
        model = new_model if new_model is not None else self._shadow
        if model is None:
            raise RuntimeError("no shadow model: call create_shadow_copy() or pass new_model")
        self._counter += 1
        self._previous.append(self._active)
        self._active = ModelVersion(model, self._counter)  # the atomic step
        self._shadow = None
        return self._counter

    def rollback(self) -> nn.Module:
        """Re-activate the previous version; returns it. Raises if none is kept."""
        if not self._previous:
            raise RuntimeError("no previous model version to roll back to")
        self._active = self._previous.pop()
        return self._active.model
