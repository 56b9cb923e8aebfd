"""The experience stream: every accepted feedback sample, in order, in Redis.

One home for its record format. The learner appends what it learned
(:meth:`ExperienceStream.record`), retraining reads the newest window of it
(:meth:`ExperienceStream.window`). A record is a stream entry with fields

* ``x`` — the example as a JSON list, ``y`` — the target as JSON,
* ``v`` — the model version serving when it arrived, ``n`` — the learner's node id;

or a *drift marker*, ``drift`` (the :class:`~omnimind.learning.DriftEvent` as
JSON) and ``n``, placed before the first sample after the detected change. A
reader walking back from the newest sample stops at the newest marker, so a
retrain after a drift sees only the new concept.

Recording is one Lua script (``omnimind/lua/experience_append.lua``): the rows,
their drift markers, the coordinator's drift events and the task's *done
marker* (``keys.learn_done``, the outcome JSON) are written together or not at
all, and a second record under the same task id (a redelivered ``learn``)
writes nothing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import redis
import torch

from omnimind import keys, lua

#: How long a learn task's done marker lives: longer than any redelivery delay
#: (the broker's visibility timeout is one hour by default).
DONE_TTL_S = 6 * 3600
DRIFT_STREAM_MAXLEN = 10_000


@dataclass(frozen=True)
class Window:
    """The newest samples of the stream, oldest first; ``since_drift`` when a drift marker cut it short."""

    x: torch.Tensor
    #: A list of labels when read with ``labels=True``.
    y: torch.Tensor | list
    since_drift: bool

    @property
    def samples(self) -> int:
        return int(self.x.shape[0])


class ExperienceStream:
    """Appends to and reads the experience stream (``keys.EXPERIENCE``).

    ``maxlen`` caps it (approximate trimming, oldest first).
    """

    def __init__(self, client: redis.Redis, maxlen: int = 100_000) -> None:
        self.client = client
        self.maxlen = int(maxlen)
        self._append = client.register_script(lua.source("experience_append"))

    # ------------------------------------------------------------------ writes
    def record(
        self,
        task_id: str,
        x: np.ndarray,
        y: np.ndarray,
        *,
        served_version: int,
        node_id: str,
        outcome: dict,
        drifts: Sequence[tuple[int, object]] = (),
    ) -> bool:
        """Append one learn call's rows, once per ``task_id``; False if it was recorded before.

        ``drifts`` are ``(row offset, DriftEvent)`` pairs: a marker is placed before that row.
        """
        args: list = [self.maxlen, DONE_TTL_S, json.dumps(outcome), node_id, int(served_version),
                      DRIFT_STREAM_MAXLEN, len(x)]
        for row, target in zip(x.tolist(), y.tolist()):
            args += [json.dumps(row), json.dumps(target)]
        args.append(len(drifts))
        for offset, event in sorted(drifts, key=lambda pair: pair[0]):
            args += [int(offset), json.dumps(asdict(event))]
        reply = self._append(keys=[keys.EXPERIENCE, keys.learn_done(task_id), keys.DRIFT_EVENTS], args=args)
        return int(reply) == 1

    def recorded(self, task_id: str) -> dict | None:
        """The outcome stored when ``task_id`` was recorded, or None if it never was."""
        raw = self.client.get(keys.learn_done(task_id))
        return json.loads(raw) if raw is not None else None

    # ------------------------------------------------------------------- reads
    def window(self, limit: int, example_shape: Sequence[int], *, since_drift: bool = True,
               labels: bool = False) -> Window:
        """The newest ``limit`` samples (of ``example_shape``), oldest first; with
        ``since_drift``, none from before the newest drift marker. With ``labels``,
        ``y`` is the list of a classifier's labels as recorded (strings or integers)."""
        shape = tuple(example_shape)
        xs, ys = [], []
        cut = False
        # Markers take stream entries too: read a little more than asked, then page.
        newest = "+"
        while len(xs) < limit and not cut:
            page = self.client.xrevrange(keys.EXPERIENCE, max=newest, count=min(limit - len(xs) + 16, 10_000))
            if not page:
                break
            for _entry_id, fields in page:
                if b"drift" in fields:
                    if since_drift:
                        cut = True
                        break
                    continue
                x = np.asarray(json.loads(fields[b"x"]), dtype=np.float32)
                if x.shape != shape:  # recorded for another model architecture
                    continue
                xs.append(x)
                target = json.loads(fields[b"y"])
                ys.append(target if labels else np.atleast_1d(np.asarray(target, dtype=np.float32)))
                if len(xs) == limit:
                    break
            newest = "(" + page[-1][0].decode()  # exclusive: continue below the page's oldest
        if not xs:
            return Window(torch.empty((0, *shape)), [] if labels else torch.empty((0, 1)), cut)
        xs.reverse()
        ys.reverse()
        return Window(torch.from_numpy(np.stack(xs)), ys if labels else torch.from_numpy(np.stack(ys)), cut)

    def __len__(self) -> int:
        return int(self.client.xlen(keys.EXPERIENCE))
