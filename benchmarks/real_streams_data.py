"""The streams of the real-streams benchmark, from what River ships (nothing downloaded).

- ``phishing``: ``datasets.Phishing`` (binary, 1,250 samples, 9 features);
- ``image_segments``: ``datasets.ImageSegments`` (7 classes, 2,310 samples, 18 features);
- ``friedman``: ``datasets.synth.FriedmanDrift`` (regression, 10 features, global recurring abrupt drift:
  the concept changes at a third of the stream and changes back at two thirds);
- ``trump_approval``: ``datasets.TrumpApproval`` (regression, 1,001 samples, 6 features whose scales
  differ by five orders of magnitude: an ordinal date near 7e5 beside poll figures near 40).

Each is materialised once, in order, so that the farm and every baseline see the same samples; a stream
crosses to the baseline processes as JSON (:meth:`RealStream.to_json`).

>>> s = load("phishing", limit=5)
>>> s.task, s.classes, len(s.features), s.x.shape
('binary', [False, True], 9, (5, 9))
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: name -> (task, default number of samples; None: all of a bundled dataset)
STREAMS = {"phishing": ("binary", None), "image_segments": ("multiclass", None),
           "friedman": ("regression", 4000), "trump_approval": ("regression", None)}


@dataclass
class RealStream:
    """One stream in order: features as a float matrix (columns in ``features`` order), raw targets."""

    name: str
    task: str
    features: list[str]
    x: np.ndarray
    y: list
    classes: list = field(default_factory=list)  # classifiers: the labels, sorted; index = the farm's target

    def __len__(self) -> int:
        return len(self.y)

    def dicts(self) -> list[dict[str, float]]:
        """The rows as River feature dicts."""
        return [dict(zip(self.features, row)) for row in self.x.tolist()]

    def class_index(self, labels) -> list[int]:
        """Labels as indices into ``classes`` (what today's farm learns with cross entropy)."""
        index = {label: i for i, label in enumerate(self.classes)}
        return [index[label] for label in labels]

    def to_json(self) -> dict:
        return {"name": self.name, "task": self.task, "features": self.features, "x": self.x.tolist(),
                "y": list(self.y), "classes": list(self.classes)}

    @classmethod
    def from_json(cls, data: dict) -> "RealStream":
        return cls(data["name"], data["task"], data["features"], np.asarray(data["x"], dtype=np.float64),
                   list(data["y"]), list(data["classes"]))


def _dataset(name: str, n: int | None, seed: int):
    from river import datasets

    if name == "phishing":
        return datasets.Phishing()
    if name == "image_segments":
        return datasets.ImageSegments()
    if name == "trump_approval":
        return datasets.TrumpApproval()
    if name == "friedman":
        third = (n or STREAMS["friedman"][1]) // 3
        return datasets.synth.FriedmanDrift(drift_type="gra", position=(third, 2 * third), seed=seed)
    raise ValueError(f"unknown stream {name!r}; known: {sorted(STREAMS)}")


def load(name: str, limit: int | None = None, seed: int = 42) -> RealStream:
    """The first ``limit`` samples (default: the stream's own length) of stream ``name``."""
    task, default_n = STREAMS[name]
    n = limit if limit is not None else default_n
    if default_n is not None and limit is not None:
        n = min(limit, default_n)
    rows = list(itertools.islice(iter(_dataset(name, n, seed)), n))
    features = list(rows[0][0])
    x = np.asarray([[float(row[0][f]) for f in features] for row in rows], dtype=np.float64)
    y: list[Any] = [row[1] for row in rows]
    if task == "regression":
        y = [float(v) for v in y]
        classes = []
    else:
        classes = sorted(set(y), key=str)
    return RealStream(name, task, features, x, y, classes)
