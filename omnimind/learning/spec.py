"""What a served model is: its head, loss, preprocessing and class labels, as one object.

A :class:`ModelSpec` is read from settings (``OMNIMIND_MODEL_HEAD``,
``OMNIMIND_MODEL_LABELS``, ...; see :meth:`ModelSpec.from_settings`) and travels
as one JSON-able object, so that a per-model catalog can hold it later.

Heads:

* ``regression``: one or several real outputs (multi-output regression when the
  model has several), loss ``mse`` (or ``huber``); targets are standardized
  online unless ``scale_target`` is off, and predictions are returned in target units.
* ``binary``: one logit, loss ``bce``; two labels.
* ``multiclass``: one logit per class, loss ``cross_entropy``.

Classifiers return, per example, the ``label``, the ``probabilities`` of every
known label and the ``top_k`` labels. Labels may be strings or integers. With
``labels`` declared the set is closed by default (``label_policy="refuse"``: an
unseen label is refused); with ``label_policy="grow"`` an unseen label takes the
next unused output of the head, until the head is full.

>>> spec = ModelSpec(head="multiclass", labels=("cat", "dog"))
>>> spec.loss, spec.label_policy, spec.is_classifier
('cross_entropy', 'refuse', True)
>>> ModelSpec().loss, ModelSpec(head="binary").loss
('mse', 'bce')
>>> ModelSpec.from_json(ModelSpec(head="binary", labels=("no", "yes")).to_json()).labels
('no', 'yes')
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from omnimind.config import HEAD_LOSSES, HEADS, LABEL_POLICIES, model_head
from omnimind.signature import Signature

__all__ = ["HEADS", "LABEL_POLICIES", "ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """Head, loss, preprocessing switches and labels of one model (see the module docstring)."""

    head: str = "regression"
    #: Empty: the head's default (mse, bce, cross_entropy).
    loss: str = ""
    #: Running standardization of the model's float inputs (mean 0, variance 1 per feature).
    standardize: bool = True
    #: Regression: the model learns standardized targets; predictions are scaled back.
    scale_target: bool = True
    labels: tuple = ()
    #: Empty: "refuse" when labels are declared, "grow" when they are not.
    label_policy: str = ""
    top_k: int = 3
    #: Longest label, in UTF-8 bytes of its JSON form (labels live in a fixed-size buffer).
    max_label_bytes: int = 64
    #: Named inputs (``omnimind.signature.Signature.to_dict()`` form); None: one float vector.
    signature: dict | None = None

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        loss = self.loss or HEAD_LOSSES[self.head][0]
        if loss not in HEAD_LOSSES[self.head]:
            raise ValueError(f"loss {loss!r} does not fit a {self.head} head (use one of {HEAD_LOSSES[self.head]})")
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "labels", tuple(self.labels))
        policy = self.label_policy or ("refuse" if self.labels else "grow")
        if policy not in LABEL_POLICIES:
            raise ValueError(f"label_policy must be one of {LABEL_POLICIES}, got {policy!r}")
        object.__setattr__(self, "label_policy", policy)
        if self.head == "binary" and len(self.labels) > 2:
            raise ValueError(f"a binary head has two labels, not {len(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be distinct")
        if self.top_k < 1:
            raise ValueError("top_k must be at least 1")
        if self.signature is not None:
            object.__setattr__(self, "signature", Signature.from_json(self.signature).to_dict())

    @property
    def inputs(self) -> Signature | None:
        """The parsed signature (None: one unnamed float vector)."""
        return None if self.signature is None else Signature.from_json(self.signature)

    @property
    def is_classifier(self) -> bool:
        return self.head != "regression"

    @property
    def default_optimizer(self) -> str:
        """The online learner's optimizer unless ``OMNIMIND_LEARNING_OPTIMIZER`` names one:
        adam for a classifier, sgd for a regressor."""
        return "adam" if self.is_classifier else "sgd"

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = list(self.labels)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> ModelSpec:
        data = json.loads(raw)
        data["labels"] = tuple(data.get("labels") or ())
        return cls(**data)

    @classmethod
    def from_settings(cls, settings: Any) -> ModelSpec:
        """The spec a farm's settings declare (``OMNIMIND_MODEL_HEAD``, ``OMNIMIND_LEARNING_LOSS``,
        ``OMNIMIND_MODEL_LABELS``, ``OMNIMIND_MODEL_LABEL_POLICY``, ``OMNIMIND_MODEL_STANDARDIZE``,
        ``OMNIMIND_MODEL_SCALE_TARGET``, ``OMNIMIND_MODEL_TOP_K``).

        ``OMNIMIND_LEARNING_LOSS=cross_entropy`` alone (the way classifiers were
        declared before heads existed) still means a multiclass head.
        """
        loss = settings.learning_loss
        head = model_head(settings.model_head, loss)
        signature = json.loads(settings.model_signature) if settings.model_signature else None
        return cls(head=head, loss=loss, standardize=settings.model_standardize,
                   scale_target=settings.model_scale_target, labels=tuple(settings.model_labels),
                   label_policy=settings.model_label_policy, top_k=settings.model_top_k, signature=signature)
