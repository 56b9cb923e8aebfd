"""A model's signature: its named inputs, and how a JSON request becomes the batch it takes.

Declared with ``OMNIMIND_MODEL_SIGNATURE`` (JSON, part of the model's spec,
:class:`omnimind.learning.spec.ModelSpec`); without one a model takes one
unnamed float vector of ``OMNIMIND_MODEL_INPUT_SIZE`` (the shortcut). Two kinds:

* **Tabular**: named scalar features, each ``float32``, ``int64``, ``bool`` or
  ``string``; or ``float32`` vectors (``"shape": [k]``). They are encoded into one
  float vector, in declaration order: a number as itself, a bool as 0/1, a string
  one-hot over its declared ``values`` (``"encoder": "onehot"``, an unlisted value is
  refused) or hashed into ``buckets`` (``"encoder": "hash"``). Only the numeric
  columns are standardized (``numeric_columns``). A request sends a dict of named
  features, a positional list in declaration order, or a batch (a list) of either.
* **Sequence**: one ``int64`` input with ``"shape": [-1]`` and ``max_len``: token
  ids, each in ``[0, vocab)``, padded with ``pad`` to ``max_len`` when batched;
  the model receives the ``int64`` ids, plus a boolean mask (``"mask": true``) as
  its second argument. A request sends a list of ids, a batch of lists, or
  ``{"<name>": [...]}`` (or a batch of such dicts).

Every refusal is an :class:`~omnimind.errors.InvalidInput` with a reason:
``type`` (a wrong dtype), ``unknown_feature``/``missing_feature``, ``too_long``
(a sequence longer than ``max_len``, a string longer than ``max_length`` bytes),
``out_of_range`` (a token id outside the embedding, a number outside float32), ``bad_value`` (a one-hot
string not among its ``values``), ``non_finite``, ``empty``, ``batch_too_large``.

>>> sig = Signature.from_json('{"inputs": [{"name": "age", "dtype": "float32"},'
...     '{"name": "member", "dtype": "bool"}, {"name": "color", "dtype": "string", "values": ["red", "blue"]}]}')
>>> sig.example_shape, sig.numeric_columns
((4,), (True, False, False, False))
>>> batch, single = sig.encode({"age": 31, "member": True, "color": "blue"}, max_batch=8)
>>> batch.tolist(), single
([[31.0, 1.0, 0.0, 1.0]], True)
>>> sig.encode([{"age": 1, "member": False, "colour": "red"}], max_batch=8)
Traceback (most recent call last):
...
omnimind.errors.InvalidInput: unknown_feature: unknown feature(s) colour (expected age, member, color)
>>> text = Signature.from_json('{"inputs": [{"name": "tokens", "dtype": "int64", "shape": [-1], "max_len": 4, "vocab": 10}]}')
>>> batch, _ = text.encode([[3, 4], [5, 6, 7]], max_batch=8)
>>> batch.tolist(), batch.dtype.name
([[3, 4, 0, 0], [5, 6, 7, 0]], 'int64')
>>> text.encode([3, 12], max_batch=8)
Traceback (most recent call last):
...
omnimind.errors.InvalidInput: out_of_range: 'tokens' holds token id 12 outside [0, 10)
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnimind.errors import InvalidInput

__all__ = ["DTYPES", "Feature", "Signature"]

DTYPES = ("float32", "int64", "bool", "string")
#: Longest string value (UTF-8 bytes) unless a feature declares ``max_length``.
DEFAULT_MAX_STRING = 256


@dataclass(frozen=True)
class Feature:
    """One named input (see the module docstring for the fields)."""

    name: str
    dtype: str = "float32"
    shape: tuple = ()
    max_len: int | None = None
    vocab: int | None = None
    pad: int = 0
    mask: bool = False
    encoder: str = ""
    values: tuple = ()
    buckets: int = 0
    max_length: int = DEFAULT_MAX_STRING

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"input {self.name!r}: dtype must be one of {DTYPES}, not {self.dtype!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "values", tuple(self.values))
        if self.dtype == "string":
            encoder = self.encoder or ("onehot" if self.values else "hash")
            object.__setattr__(self, "encoder", encoder)
            if encoder == "onehot" and not self.values:
                raise ValueError(f"input {self.name!r}: a one-hot string needs its values")
            if encoder == "hash" and self.buckets < 1:
                object.__setattr__(self, "buckets", 16)
            if encoder not in ("onehot", "hash"):
                raise ValueError(f"input {self.name!r}: encoder must be onehot or hash, not {encoder!r}")
        if self.variable and (self.max_len is None or self.max_len < 1):
            raise ValueError(f"input {self.name!r}: a variable dimension needs max_len")

    @property
    def variable(self) -> bool:
        return -1 in self.shape

    @property
    def width(self) -> int:
        """Columns this feature takes in a tabular vector."""
        if self.dtype == "string":
            return len(self.values) if self.encoder == "onehot" else self.buckets
        return int(np.prod(self.shape)) if self.shape else 1


class Signature:
    """Named inputs of a model; :meth:`encode` turns a request into its batch (see the module docstring)."""

    def __init__(self, features: list[Feature]) -> None:
        if not features:
            raise ValueError("a signature needs at least one input")
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ValueError("input names must be distinct")
        self.features = tuple(features)
        self.sequence = any(f.variable for f in features)
        if self.sequence and (len(features) != 1 or features[0].dtype != "int64"):
            raise ValueError("a sequence signature has exactly one int64 input of shape [-1]")
        if self.sequence:
            # An id past the model's embedding table fails inside the model (a device assert on CUDA).
            token = features[0]
            if token.vocab is None or token.vocab < 1:
                raise ValueError(f"input {token.name!r}: a token sequence needs vocab (ids lie in [0, vocab))")
            if not 0 <= token.pad < token.vocab:
                raise ValueError(f"input {token.name!r}: pad {token.pad} must lie in [0, vocab={token.vocab})")
        if not self.sequence and any(len(f.shape) > 1 or (f.shape and f.dtype != "float32") for f in features):
            raise ValueError("tabular inputs are scalars, or float32 vectors of shape [k]")

    @classmethod
    def from_json(cls, raw: str | dict) -> Signature:
        data = json.loads(raw) if isinstance(raw, str) else raw
        inputs = data.get("inputs") if isinstance(data, dict) else data
        if not isinstance(inputs, list):
            raise ValueError('a signature is {"inputs": [{"name": ..., "dtype": ...}, ...]}')
        return cls([Feature(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in item.items()})
                    for item in inputs])

    def to_dict(self) -> dict:
        return {"inputs": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in f.__dict__.items()}
                           for f in self.features]}

    # ------------------------------------------------------------------ shapes
    @property
    def example_shape(self) -> tuple[int, ...]:
        if self.sequence:
            return (self.features[0].max_len,)
        return (sum(f.width for f in self.features),)

    @property
    def numeric_columns(self) -> tuple[bool, ...]:
        """Per column of a tabular vector: whether it is standardized (float32 and int64 features)."""
        columns: list[bool] = []
        for f in self.features:
            columns += [f.dtype in ("float32", "int64")] * f.width
        return tuple(columns)

    # ------------------------------------------------------------------ encode
    def encode(self, value: Any, max_batch: int, name: str = "inputs") -> tuple[np.ndarray, bool]:
        """``(batch, single)``: the request as the model's batch, or ``InvalidInput``."""
        examples, single = self._split(value, name)
        if not examples:
            raise InvalidInput("empty", f"'{name}' is an empty batch")
        if len(examples) > max_batch:
            raise InvalidInput("batch_too_large", f"batch of {len(examples)} exceeds the limit of {max_batch}")
        if self.sequence:
            return np.stack([self._sequence(example) for example in examples]), single
        return np.stack([self._tabular(example) for example in examples]).astype(np.float32), single

    def _split(self, value: Any, name: str) -> tuple[list, bool]:
        if value is None:
            raise InvalidInput("missing_field", f"'{name}' is required")
        if isinstance(value, dict):
            return [value], True
        if not isinstance(value, list):
            raise InvalidInput("type", f"'{name}' must be a dict of named features, a list, or a batch of them")
        if value and isinstance(value[0], (dict, list)):
            if self.sequence or not self._positional_vector(value):
                return value, False
        return [value], True

    def _positional_vector(self, value: list) -> bool:
        # [[...], ...] for a tabular signature with a vector input first is one positional example.
        return len(self.features) > 1 and self.features[0].shape != () and len(value) == len(self.features) \
            and not isinstance(value[0], dict) and not isinstance(value[-1], list)

    def _sequence(self, example: Any) -> np.ndarray:
        feature = self.features[0]
        if isinstance(example, dict):
            self._check_names(example)
            example = example[feature.name]
        if not isinstance(example, list):
            raise InvalidInput("type", f"'{feature.name}' must be a list of token ids")
        if len(example) > feature.max_len:
            raise InvalidInput("too_long", f"'{feature.name}' has {len(example)} tokens, more than {feature.max_len}")
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in example):
            raise InvalidInput("type", f"'{feature.name}' must hold integer token ids (int64)")
        # Checked before the int64 array holds them: 10**20 does not fit one.
        vocab = int(feature.vocab or 0)  # required of a sequence signature
        bad = [t for t in example if t < 0 or t >= vocab]
        if bad:
            raise InvalidInput("out_of_range", f"'{feature.name}' holds token id {bad[0]} outside [0, {feature.vocab})")
        ids = np.full(feature.max_len, feature.pad, dtype=np.int64)
        ids[: len(example)] = example
        return ids

    def _check_names(self, example: dict) -> None:
        names = [f.name for f in self.features]
        unknown = [k for k in example if k not in names]
        if unknown:
            raise InvalidInput("unknown_feature", f"unknown feature(s) {', '.join(map(str, unknown[:5]))} "
                                                  f"(expected {', '.join(names)})")
        missing = [n for n in names if n not in example]
        if missing:
            raise InvalidInput("missing_feature", f"missing feature(s) {', '.join(missing)}")

    def _tabular(self, example: Any) -> np.ndarray:
        if isinstance(example, dict):
            self._check_names(example)
            values = [example[f.name] for f in self.features]
        elif isinstance(example, list):
            if len(example) != len(self.features):
                raise InvalidInput("shape", f"a positional example has {len(self.features)} values "
                                            f"({', '.join(f.name for f in self.features)}), got {len(example)}")
            values = example
        else:
            raise InvalidInput("type", "an example is a dict of named features or a positional list")
        columns = [self._column(f, v) for f, v in zip(self.features, values)]
        return np.concatenate(columns)

    def _column(self, f: Feature, value: Any) -> np.ndarray:
        if f.dtype == "string":
            if not isinstance(value, str):
                raise InvalidInput("type", f"'{f.name}' must be a string, not {type(value).__name__}")
            raw = value.encode("utf-8")
            if len(raw) > f.max_length:
                raise InvalidInput("too_long", f"'{f.name}' is {len(raw)} bytes, more than {f.max_length}")
            out = np.zeros(f.width, dtype=np.float32)
            if f.encoder == "onehot":
                if value not in f.values:
                    raise InvalidInput("bad_value", f"'{f.name}' must be one of {list(f.values)[:10]}, not {value!r}")
                out[f.values.index(value)] = 1.0
            else:
                out[int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little") % f.buckets] = 1.0
            return out
        if f.dtype == "bool":
            if not isinstance(value, bool):
                raise InvalidInput("type", f"'{f.name}' must be true or false, not {type(value).__name__}")
            return np.asarray([float(value)], dtype=np.float32)
        if f.dtype == "int64":
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInput("type", f"'{f.name}' must be an integer, not {type(value).__name__}")
            return _float32([value], f.name)
        if f.shape:
            array = _numbers(value, f.name)
            if array.shape != f.shape:
                raise InvalidInput("shape", f"'{f.name}' must have shape {list(f.shape)}, got {list(array.shape)}")
            return array.reshape(-1)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput("type", f"'{f.name}' must be a number, not {type(value).__name__}")
        return _float32([value], f.name)


def _numbers(value: Any, name: str) -> np.ndarray:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise InvalidInput("type", f"'{name}' must be a list of numbers")
    return _float32(value, name)


def _float32(value: list, name: str) -> np.ndarray:
    # Checked after the float32 cast: 1e39 is finite as sent and infinite as the model would see it.
    outside = InvalidInput("out_of_range", f"'{name}' holds a value outside float32's range (about 3.4e38)")
    try:
        with np.errstate(over="ignore"):
            array = np.asarray(value, dtype=np.float32)
    except OverflowError:  # an integer beyond even float64
        raise outside from None
    if not np.isfinite(array).all():
        if np.isfinite(np.asarray(value, dtype=np.float64)).all():
            raise outside
        raise InvalidInput("non_finite", f"'{name}' contains NaN or infinity")
    return array
