"""Online preprocessing that travels with the weights: input standardization,
target scaling and the class-label table, kept as buffers of the served module.

:func:`attach` registers the state on the model as persistent buffers whose
names start with ``omnimind_`` (so they are in its ``state_dict``, hence in the
published safetensors blob and covered by its sha256), and a forward pre-hook
that standardizes float inputs with them. Whatever loads a version (a serving
worker, the learner's champion, a rollback, a retrain) therefore applies the
same transforms, and the learner updates them as it learns (:func:`observe`).

* Inputs: running mean and variance per feature (Chan's parallel update, float64);
  a feature with no variance yet is only centred.
* Targets (regression, ``scale_target``): the model learns standardized targets;
  :func:`encode_targets` maps targets in, :func:`decode_outputs` maps predictions back.
* Labels (classifiers): a fixed-size table of JSON-encoded labels, one per output;
  :func:`label_indices` maps labels to outputs, refusing or growing by the spec's policy.

Pure: no I/O. A blob published before these buffers existed loads with fresh
ones (identity transforms): see :func:`is_state_key`.

>>> import torch
>>> from torch import nn
>>> from omnimind.learning.spec import ModelSpec
>>> model = attach(nn.Linear(2, 1), ModelSpec(), input_width=2, output_width=1)
>>> x = torch.tensor([[1e5, 1.0], [3e5, 3.0]]); y = torch.tensor([[10.0], [30.0]])
>>> observe(model, ModelSpec(), x, y)
>>> standardize(model, x).tolist()
[[-1.0, -1.0], [1.0, 1.0]]
>>> encode_targets(model, y).tolist()
[[-1.0], [1.0]]
>>> clf = attach(nn.Linear(2, 3), ModelSpec(head="multiclass"), input_width=2, output_width=3)
>>> label_indices(clf, ModelSpec(head="multiclass"), ["b", "a", "b"]).tolist(), labels_of(clf)
([0, 1, 0], ['b', 'a'])
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import InvalidFeedback
from .spec import ModelSpec

__all__ = [
    "STATE_PREFIX",
    "attach",
    "attach_mask",
    "decode_outputs",
    "decode_regression",
    "encode_targets",
    "is_state_key",
    "label_indices",
    "labels_of",
    "observe",
    "standardize",
]

#: Buffers of this module's state start with this; no user module names a parameter so.
STATE_PREFIX = "omnimind_"
_EPS = 1e-12


def is_state_key(key: str) -> bool:
    """Whether a state_dict key is preprocessing state (absent from blobs published before it existed)."""
    return key.rsplit(".", 1)[-1].startswith(STATE_PREFIX)


def attach(model: nn.Module, spec: ModelSpec, *, input_width: int | None, output_width: int) -> nn.Module:
    """Give ``model`` the preprocessing state of ``spec`` (fresh: identity transforms); returns it."""
    signature = spec.inputs
    if spec.standardize and input_width is not None and (signature is None or not signature.sequence):
        model.register_buffer("omnimind_x_count", torch.zeros((), dtype=torch.float64))
        model.register_buffer("omnimind_x_mean", torch.zeros(input_width, dtype=torch.float64))
        model.register_buffer("omnimind_x_m2", torch.zeros(input_width, dtype=torch.float64))
        # Which columns are numbers (one-hot and bool columns keep their 0/1): configuration, not state.
        numeric = signature.numeric_columns if signature is not None else (True,) * input_width
        model.register_buffer("omnimind_x_numeric", torch.tensor(numeric, dtype=torch.bool), persistent=False)
        # Derived from the statistics (not state): what the forward pass subtracts and divides by.
        model.register_buffer("omnimind_x_shift", torch.zeros(input_width), persistent=False)
        model.register_buffer("omnimind_x_scale", torch.ones(input_width), persistent=False)
        model.register_forward_pre_hook(_standardize_hook)
    if spec.head == "regression" and spec.scale_target:
        model.register_buffer("omnimind_y_count", torch.zeros((), dtype=torch.float64))
        model.register_buffer("omnimind_y_mean", torch.zeros(output_width, dtype=torch.float64))
        model.register_buffer("omnimind_y_m2", torch.zeros(output_width, dtype=torch.float64))
        model.register_buffer("omnimind_y_shift", torch.zeros(output_width), persistent=False)
        model.register_buffer("omnimind_y_scale", torch.ones(output_width), persistent=False)
    if hasattr(model, "omnimind_x_mean") or hasattr(model, "omnimind_y_mean"):
        # Loading a version's statistics (a swap, a rollback, a resumed learner) refreshes what derives from them.
        model.register_load_state_dict_post_hook(lambda module, _keys: _refresh(module))
    if spec.is_classifier:
        classes = 2 if spec.head == "binary" else output_width
        if len(spec.labels) > classes:
            raise ValueError(f"{len(spec.labels)} labels declared but the head has {classes} outputs")
        table = torch.zeros((classes, spec.max_label_bytes), dtype=torch.uint8)
        model.register_buffer("omnimind_labels", table)
        model.register_buffer("omnimind_label_count", torch.zeros((), dtype=torch.int64))
        for label in spec.labels:
            _add_label(model, spec, label)
    return model


def attach_mask(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """For a token-sequence signature with ``mask``: ``model(ids)`` calls the module's
    forward as ``forward(ids, ids != pad)``, wherever it is called from."""
    signature = spec.inputs
    if signature is not None and signature.sequence and signature.features[0].mask:
        model.omnimind_pad_id = signature.features[0].pad
        model.register_forward_pre_hook(_mask_hook)
    return model


# ------------------------------------------------------------------------ statistics
def _update(count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor, batch: torch.Tensor) -> None:
    batch = batch.detach().to(torch.float64).reshape(batch.shape[0], -1)
    n_b = batch.shape[0]
    mean_b = batch.mean(dim=0)
    m2_b = (batch - mean_b).square().sum(dim=0)
    n_a = float(count)
    n = n_a + n_b
    delta = mean_b - mean
    mean.add_(delta * (n_b / n))
    m2.add_(m2_b + delta.square() * (n_a * n_b / n))
    count.fill_(n)


def _scale(count: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    variance = m2 / count.clamp(min=1.0)
    return torch.where(variance > _EPS, variance.sqrt(), torch.ones_like(variance))


def _refresh(model: nn.Module) -> None:
    # float32 shift/scale for the forward pass and the targets, from the float64 statistics.
    with torch.no_grad():
        if hasattr(model, "omnimind_x_mean"):
            numeric = model.omnimind_x_numeric
            model.omnimind_x_shift.copy_(torch.where(numeric, model.omnimind_x_mean, 0.0))
            model.omnimind_x_scale.copy_(torch.where(numeric, _scale(model.omnimind_x_count, model.omnimind_x_m2), 1.0))
        if hasattr(model, "omnimind_y_mean"):
            model.omnimind_y_shift.copy_(model.omnimind_y_mean)
            model.omnimind_y_scale.copy_(_scale(model.omnimind_y_count, model.omnimind_y_m2))


def observe(model: nn.Module, spec: ModelSpec, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """Fold a validated batch into the running statistics (call before learning from it)."""
    with torch.no_grad():
        if hasattr(model, "omnimind_x_mean") and x.dtype.is_floating_point and x.dim() == 2:
            _update(model.omnimind_x_count, model.omnimind_x_mean, model.omnimind_x_m2, x)
        if y is not None and hasattr(model, "omnimind_y_mean"):
            _update(model.omnimind_y_count, model.omnimind_y_mean, model.omnimind_y_m2, y)
    _refresh(model)


def standardize(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` standardized with ``model``'s running statistics (what its forward sees)."""
    if not hasattr(model, "omnimind_x_mean") or not x.dtype.is_floating_point or x.dim() != 2:
        return x
    return (x - model.omnimind_x_shift.to(x.dtype)) / model.omnimind_x_scale.to(x.dtype)


def _standardize_hook(module: nn.Module, args: tuple) -> tuple | None:
    if not args or not isinstance(args[0], torch.Tensor):
        return None
    return (standardize(module, args[0]), *args[1:])


def _mask_hook(module: nn.Module, args: tuple) -> tuple | None:
    # Token ids padded to max_len: the model gets the mask of real tokens as its second argument.
    if len(args) != 1 or not isinstance(args[0], torch.Tensor) or args[0].dtype.is_floating_point:
        return None
    return (args[0], args[0] != module.omnimind_pad_id)


def encode_targets(model: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Regression targets in the units ``model`` learns (standardized when its spec had ``scale_target``)."""
    if not hasattr(model, "omnimind_y_mean"):
        return y
    return (y - model.omnimind_y_shift.to(y.device, y.dtype)) / model.omnimind_y_scale.to(y.device, y.dtype)


def decode_regression(model: nn.Module, outputs: torch.Tensor) -> torch.Tensor:
    """Model outputs back in target units."""
    if not hasattr(model, "omnimind_y_mean"):
        return outputs
    if outputs.dtype == torch.float64:  # serving: exact, from the statistics themselves
        scale = _scale(model.omnimind_y_count, model.omnimind_y_m2).to(outputs.device)
        return outputs * scale + model.omnimind_y_mean.to(outputs.device)
    return outputs * model.omnimind_y_scale.to(outputs.device, outputs.dtype) \
        + model.omnimind_y_shift.to(outputs.device, outputs.dtype)


# ---------------------------------------------------------------------------- labels
def labels_of(model: nn.Module) -> list:
    """The labels ``model``'s outputs stand for, in output order."""
    if getattr(model, "omnimind_labels", None) is None:
        return []
    return table_labels({key: getattr(model, key) for key in LABEL_KEYS}) or []


LABEL_KEYS = ("omnimind_labels", "omnimind_label_count")


def table_labels(state_dict: Mapping[str, torch.Tensor]) -> list | None:
    """The labels a state_dict's label table holds, in output order (None: it has no table)."""
    table = state_dict.get("omnimind_labels")
    count = state_dict.get("omnimind_label_count")
    if table is None or count is None:
        return None
    rows = table[: int(count)].to("cpu").numpy()
    return [json.loads(bytes(row).rstrip(b"\0").decode("utf-8")) for row in rows]


def _encode_label(spec: ModelSpec, label: Any) -> bytes:
    if not isinstance(label, (str, int)):  # a bool is an int, and JSON keeps it apart from 0 and 1
        raise InvalidFeedback(f"a label must be a string, an integer or a bool, not {type(label).__name__}",
                              reason="type")
    raw = json.dumps(label).encode("utf-8")
    if len(raw) > spec.max_label_bytes:
        raise InvalidFeedback(f"label longer than {spec.max_label_bytes} bytes", reason="label_too_long")
    return raw


def _add_label(model: nn.Module, spec: ModelSpec, label: Any) -> int:
    raw = _encode_label(spec, label)
    index = int(model.omnimind_label_count)
    if index >= model.omnimind_labels.shape[0]:
        raise InvalidFeedback(f"label {label!r} is new and the head's {index} outputs are all taken",
                              reason="label_range")
    row = torch.zeros(spec.max_label_bytes, dtype=torch.uint8)
    row[: len(raw)] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    with torch.no_grad():
        model.omnimind_labels[index] = row
        model.omnimind_label_count.fill_(index + 1)
    return index


def label_indices(model: nn.Module, spec: ModelSpec, raw_labels: Sequence[Any]) -> torch.Tensor:
    """The output index of each label (int64). Unseen labels are refused
    (``InvalidFeedback`` reason ``label_range``, nothing changed) or, under the
    ``grow`` policy, take the next free outputs."""
    known = {json.dumps(label): i for i, label in enumerate(labels_of(model))}
    new = []
    for label in raw_labels:
        key = json.dumps(_label_value(label))
        _encode_label(spec, _label_value(label))
        if key not in known and key not in new:
            new.append(key)
    if new:
        if spec.label_policy == "refuse":
            raise InvalidFeedback(f"label(s) {', '.join(new[:3])} not in the declared set", reason="label_range")
        if int(model.omnimind_label_count) + len(new) > model.omnimind_labels.shape[0]:
            raise InvalidFeedback(f"{len(new)} new label(s) but only "
                                  f"{model.omnimind_labels.shape[0] - int(model.omnimind_label_count)} free outputs",
                                  reason="label_range")
        for key in new:
            known[key] = _add_label(model, spec, json.loads(key))
    return torch.tensor([known[json.dumps(_label_value(label))] for label in raw_labels], dtype=torch.int64)


def _label_value(label: Any) -> Any:
    # JSON numbers arrive as floats when the client sent 1.0: a whole float is that integer.
    if isinstance(label, float) and label.is_integer():
        return int(label)
    if isinstance(label, np.generic):
        return _label_value(label.item())
    return label


# ---------------------------------------------------------------------------- serving
def decode_outputs(model: nn.Module, spec: ModelSpec, outputs: np.ndarray) -> tuple[list, list | None]:
    """Served rows from raw model outputs: ``(rows, labels)``. Regression rows are
    outputs in target units; a classifier row is ``{"label", "probabilities", "top_k"}``
    with probabilities in the order of ``labels`` (the labels known to this version)."""
    if not spec.is_classifier:
        if hasattr(model, "omnimind_y_mean"):
            outputs = decode_regression(model, torch.from_numpy(np.asarray(outputs, dtype=np.float64))).numpy()
        return outputs.tolist(), None
    labels = labels_of(model)
    logits = np.asarray(outputs, dtype=np.float64)
    if spec.loss == "bce":  # one logit; a binary head with cross_entropy has two and takes the softmax
        p = 1.0 / (1.0 + np.exp(-logits.reshape(logits.shape[0], -1)[:, 0]))
        probabilities = np.stack([1.0 - p, p], axis=1)[:, : len(labels)]
    else:
        known = logits[:, : len(labels)]
        if known.shape[1]:
            known = known - known.max(axis=1, keepdims=True)
            exp = np.exp(known)
            probabilities = exp / exp.sum(axis=1, keepdims=True)
        else:
            probabilities = known
    k = min(spec.top_k, len(labels))
    rows = []
    for probs in probabilities:
        order = np.argsort(-probs, kind="stable")[:k]
        top = [[labels[i], float(probs[i])] for i in order]
        rows.append({"label": top[0][0] if top else None, "probabilities": [float(p) for p in probs], "top_k": top})
    return rows, labels
