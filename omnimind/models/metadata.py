"""Metadata of a stored model version, and the update notices announcing versions.

Callers pass ``validation_loss``, ``samples_trained``, ``producer`` and
``parent_version``; any other JSON-able key lands in ``extras``. The store adds
the rest (name, version, parent, created at, SHA-256, size, fence).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from omnimind.fence import Fence

__all__ = ["PublishedVersion", "ServedVersion", "UpdateNotice", "metadata_json"]

#: Metadata the store sets itself; callers may not pass these.
_RESERVED = frozenset({"name", "version", "created_at", "sha256", "size_bytes", "fence"})
_KNOWN = frozenset({"validation_loss", "samples_trained", "producer", "parent_version", "extras"})


@dataclass(frozen=True)
class PublishedVersion:
    """Metadata of one stored version.

    >>> raw = ('{"version":3,"parent_version":2,"created_at":1700000000.000001,"name":"default",'
    ...        '"sha256":"ab","size_bytes":10,"fence":[4,9],"producer":"n1","validation_loss":0.5,'
    ...        '"samples_trained":100,"extras":{"epochs":5}}')
    >>> v = PublishedVersion.from_json(raw)
    >>> v.version, v.parent_version, v.fence, v.extras
    (3, 2, Fence(term=4, index=9), {'epochs': 5})
    """

    name: str
    version: int
    sha256: str
    size_bytes: int
    created_at: float
    parent_version: int | None = None
    validation_loss: float | None = None
    samples_trained: int | None = None
    fence: Fence | None = None
    producer: str = ""
    extras: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: bytes | str) -> "PublishedVersion":
        data = json.loads(raw)
        return cls(
            name=data["name"], version=int(data["version"]), sha256=data["sha256"],
            size_bytes=int(data["size_bytes"]), created_at=float(data["created_at"]),
            parent_version=data.get("parent_version"), validation_loss=data.get("validation_loss"),
            samples_trained=data.get("samples_trained"), fence=Fence.coerce(data.get("fence")),
            producer=data.get("producer", ""), extras=dict(data.get("extras") or {}),
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fence"] = None if self.fence is None else list(self.fence)
        return out


@dataclass(frozen=True)
class UpdateNotice:
    """One pub/sub notice: a hint to re-read the active version."""

    name: str
    version: int
    sha256: str
    event: str  # "publish" or "rollback"

    @classmethod
    def from_message(cls, message: Mapping[str, Any] | None) -> "UpdateNotice | None":
        """An :class:`UpdateNotice` from a redis-py pub/sub message; None for anything else.

        >>> UpdateNotice.from_message({"type": "message", "data": b'{"name":"m","version":2,"sha256":"x","event":"publish"}'})
        UpdateNotice(name='m', version=2, sha256='x', event='publish')
        >>> UpdateNotice.from_message({"type": "message", "data": b"garbage"}) is None
        True
        """
        if not message or message.get("type") != "message":
            return None
        try:
            data = json.loads(message["data"])
            return cls(str(data["name"]), int(data["version"]), str(data["sha256"]), str(data["event"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class ServedVersion:
    """What one serving process reported: the version it serves, the active one, and
    when it could not load the active one, the version it ``refused`` and why.

    >>> report = ServedVersion("gpu1@h", version=6, active=7, refused=7, reason="checksum", at=1700000000.0)
    >>> report.fallback, ServedVersion.from_json(report.to_json()) == report
    (True, True)
    >>> ServedVersion.from_json(b"garbage") is None
    True
    """

    node_id: str
    version: int
    active: int | None
    refused: int | None = None
    reason: str = ""
    at: float = 0.0

    @property
    def fallback(self) -> bool:
        """Serving an older version because the active one was refused (last known good)."""
        return self.refused is not None and self.refused == self.active and self.version != self.active

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> "ServedVersion | None":
        """The report, or None for anything unreadable."""
        try:
            data = json.loads(raw)
            return cls(str(data["node_id"]), int(data["version"]),
                       None if data.get("active") is None else int(data["active"]),
                       None if data.get("refused") is None else int(data["refused"]),
                       str(data.get("reason") or ""), float(data.get("at") or 0.0))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def metadata_json(name: str, metadata: Mapping[str, Any], digest: str, size: int, fence: Fence | None,
                  producer: str) -> tuple[str, str]:
    """The JSON the publish script completes (it prepends version, parent_version and created_at),
    and the explicit parent version (``""``: the script uses the active one).

    >>> user, parent = metadata_json("m", {"validation_loss": 0.5, "epochs": 3}, "ab", 10, Fence(1, 2), "n1")
    >>> user
    '{"name":"m","sha256":"ab","size_bytes":10,"fence":[1,2],"producer":"n1","validation_loss":0.5,"samples_trained":null,"extras":{"epochs":3}}'
    >>> parent
    ''
    """
    reserved = sorted(set(metadata) & _RESERVED)
    if reserved:
        raise ValueError(f"metadata keys {reserved} are set by the store")
    extras = dict(metadata.get("extras") or {})
    extras.update({k: v for k, v in metadata.items() if k not in _KNOWN})
    loss = metadata.get("validation_loss")
    if loss is not None:
        loss = float(loss)
        if not math.isfinite(loss):
            raise ValueError(f"validation_loss must be finite, not {loss}")
    samples = metadata.get("samples_trained")
    samples = None if samples is None else int(samples)
    parent = metadata.get("parent_version")
    parent = "" if parent is None else str(int(parent))
    user = {
        "name": name, "sha256": digest, "size_bytes": size,
        "fence": None if fence is None else list(fence),
        "producer": str(metadata.get("producer") or producer),
        "validation_loss": loss, "samples_trained": samples, "extras": extras,
    }
    try:
        return json.dumps(user, allow_nan=False, separators=(",", ":")), parent
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from exc
