"""Typed errors of the model store and of fencing.

Each keeps everything it needs in ``args`` (Celery rebuilds exceptions from
their JSON-serialised args) and has a short ``reason``, one of
``metrics.MODEL_SWAP_REJECTION_REASONS``, to use as the label of
``omnimind_model_swap_rejections_total{reason}``.

>>> err = StaleFence("model:default", (3, 7), (4, 0))
>>> err.reason, err.offered, err.newest
('stale', (3, 7), (4, 0))
>>> CorruptModel("default", 5, "sha256 mismatch").reason, CorruptModel("default", 5, "bad header", "unreadable").reason
('checksum', 'unreadable')
>>> str(err)
'model:default: fence 3:7 is older than the newest seen, 4:0'
>>> str(CorruptModel("default", 5, "sha256 mismatch"))
'model default version 5 is corrupt: sha256 mismatch'
"""
from __future__ import annotations

from omnimind.errors import OmniMindError

__all__ = ["ModelStoreError", "StaleFence", "UnknownVersion", "CorruptModel", "IncompatibleWeights", "Superseded"]


def _fmt_fence(fence) -> str:
    return "none" if fence is None else f"{fence[0]}:{fence[1]}"


class ModelStoreError(OmniMindError):
    """Base class of the model store's errors."""

    reason = "error"


class StaleFence(ModelStoreError):
    """A write carried a fencing token older than the newest one seen for the resource.

    ``offered`` is ``None`` for an unfenced write to a resource that has been fenced.
    """

    reason = "stale"

    def __init__(self, resource: str, offered, newest) -> None:
        offered = None if offered is None else tuple(int(x) for x in offered)
        newest = None if newest is None else tuple(int(x) for x in newest)
        super().__init__(resource, offered, newest)

    @property
    def resource(self) -> str:
        return self.args[0]

    @property
    def offered(self) -> tuple[int, int] | None:
        return self.args[1]

    @property
    def newest(self) -> tuple[int, int] | None:
        return self.args[2]

    def __str__(self) -> str:
        if self.offered is None:
            return (
                f"{self.resource}: an unfenced write is refused once the resource is fenced "
                f"(newest fence {_fmt_fence(self.newest)}); pass a fence"
            )
        return f"{self.resource}: fence {_fmt_fence(self.offered)} is older than the newest seen, {_fmt_fence(self.newest)}"


class UnknownVersion(ModelStoreError, LookupError):
    """The version was never published, or retention already deleted it (or nothing is active)."""

    reason = "missing"

    def __init__(self, name: str, version: int | None, detail: str = "") -> None:
        super().__init__(name, version, detail)

    def __str__(self) -> str:
        name, version, detail = self.args
        what = f"model {name} has no active version" if version is None else f"model {name} has no version {version}"
        return f"{what}: {detail}" if detail else what


class CorruptModel(ModelStoreError):
    """A stored blob fails its SHA-256 check or was replaced while it was verified (reason
    ``checksum``), the blob or its metadata does not decode (reason ``unreadable``), or the
    weights load but the model's output is not finite (reason ``load``)."""

    def __init__(self, name: str, version: int | None, detail: str, reason: str = "checksum") -> None:
        super().__init__(name, version, detail, reason)

    @property
    def reason(self) -> str:
        return self.args[3]

    def __str__(self) -> str:
        name, version, detail = self.args[:3]
        return f"model {name} version {version} is corrupt: {detail}"


class IncompatibleWeights(ModelStoreError, ValueError):
    """A state_dict does not fit a module: missing/unexpected keys or mismatched shapes."""

    reason = "incompatible"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)

    def __str__(self) -> str:
        return f"weights do not fit the model: {self.args[0]}"


class Superseded(ModelStoreError):
    """A publish built on a version that is no longer active (a newer publish or a
    rollback came first): refused so that it cannot undo either."""

    reason = "superseded"

    def __init__(self, name: str, expected: str, active: str) -> None:
        super().__init__(name, expected, active)

    def __str__(self) -> str:
        name, expected, active = self.args
        return f"model {name}: built on v{expected} but v{active} is active now"
