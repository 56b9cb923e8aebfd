"""The model store: versioned, fenced, verified model weights in Redis.

Layout (names in :mod:`omnimind.keys`), per model ``name``:

* ``model_active`` — STRING, the active version. **The source of truth**: workers
  read it (one GET) on start, on reconnect and at a bounded interval.
* ``model_seq`` — STRING, the last version number assigned. Versions only grow;
  a rollback moves ``model_active`` back but the next publish still gets
  ``seq + 1``.
* ``model_meta`` — HASH version -> JSON metadata, and ``model_blob`` — one
  STRING of safetensors bytes per version; written and deleted together, for the
  ``keep_versions`` newest versions (never deleting the active one).
* ``model_fence`` — the newest fencing token seen (see :mod:`omnimind.fence`).
* ``model_staging`` / ``model_receipt`` — short-lived (TTL) keys of one publish:
  the uploaded bytes before the script renames them into place, and the version
  the publish committed, so that redis-py resending the pipeline after a dropped
  connection answers the same version instead of publishing the weights twice.
* ``model_updates`` — pub/sub channel; every publish and rollback sends
  ``{"name", "version", "sha256", "event"}``. Only a hint: it is fire-and-forget.
* ``model_served`` — HASH node id -> :class:`.metadata.ServedVersion` JSON: what each
  serving process last reported serving (:meth:`ModelStore.served_versions`).

The pointer moves only to a verified version: ``publish`` hashes the bytes it
uploads (with ``model=``, the weights must load into it first); ``rollback``
fetches, hashes, decodes (with ``model=``, loads and runs) the target, and its
script refuses if the blob changed since (another SHA-256 in the metadata, or size).

``publish`` and ``rollback`` are each one Lua script: fence check, version
number, write, pointer move, retention and notice happen atomically, in that
order, or not at all. The weights travel in the same round trip just before the
script, as a ``SET`` of a staging key with a TTL that the script RENAMEs into
place (O(1)) or deletes when it refuses the fence; passing the bytes as a
script argument instead costs two extra copies inside Redis (about 2x the
publish latency at 50 MB on the dev box). A publisher that dies between the two leaves
only a staging key that expires. The fence rule is ``fence_check`` of
:data:`omnimind.fence.FENCE_LUA`, the rules every fenced script starts with.
``fence=None`` is accepted only while the store has never been fenced (single-node
setups without Raft); afterwards pass a token — the CLI passes the newest one seen
unless ``--fence`` is given. Behind Sentinel a publish or rollback counts once ``replicas``
confirmed it (``WAIT``, :mod:`omnimind.replication`), else it raises ``NotReplicated``.

The scripts derive per-version blob key names from a prefix (not all keys are
declared), so the store needs one Redis (a primary), not Redis Cluster.
"""
from __future__ import annotations

import socket
import time
import uuid
from typing import Any, Iterator, Mapping

import redis
import torch
from torch import nn

from omnimind import keys, lua
from omnimind.fence import FENCE_LUA, Fence, fence_args, read_fence
from omnimind.models.errors import CorruptModel, ModelStoreError, StaleFence, Superseded, UnknownVersion
from omnimind.models.metadata import PublishedVersion, ServedVersion, UpdateNotice, metadata_json
from omnimind.models.serialization import decode_state_dict, encode_state_dict, load_into, sha256_hex
from omnimind.observability import metrics
from omnimind.replication import ReplicaQuorum

__all__ = ["ModelStore", "PublishedVersion", "UpdateNotice", "DEFAULT_KEEP_VERSIONS", "STAGING_TTL",
           "SERVED_MAX_AGE", "check_loads"]

DEFAULT_KEEP_VERSIONS = 10
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

#: Seconds a staged upload survives if its publish never runs (the publisher died in between).
STAGING_TTL = 600

#: A served-version report older than this many seconds is a worker that stopped reporting.
SERVED_MAX_AGE = 30.0

#: The publish script (``omnimind/lua/model_publish.lua``) after the shared fence rule.
_PUBLISH_LUA = FENCE_LUA + "\n" + lua.source("model_publish")
#: The rollback script (``omnimind/lua/model_rollback.lua``): refuses a blob replaced since it was verified.
_ROLLBACK_LUA = FENCE_LUA + "\n" + lua.source("model_rollback")


class ModelStore:
    """Publish, fetch, roll back and watch the versions of one model.

    >>> store = ModelStore(redis.Redis(), "demo")  # connects on first use
    >>> store.channel, store.resource
    ('omnimind:model:demo:updates', 'model:demo')
    """

    def __init__(self, client: redis.Redis, name: str = "default", keep_versions: int = DEFAULT_KEEP_VERSIONS,
                 producer: str | None = None, replicas: ReplicaQuorum | None = None) -> None:
        if not name or not set(name) <= _NAME_CHARS:
            raise ValueError(f"a model name uses letters, digits, '_', '.' and '-' only, not {name!r}")
        if int(keep_versions) < 1:
            raise ValueError(f"keep_versions must be at least 1, not {keep_versions}")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the model store needs a redis client without decode_responses (blobs are bytes)")
        self.client = client
        self.name = name
        self.keep_versions = int(keep_versions)
        self.producer = producer or socket.gethostname()
        self.resource = f"model:{name}"
        self.replicas = replicas if replicas is not None else ReplicaQuorum.from_settings()
        self.channel = keys.model_updates(name)
        self._fence_key = keys.model_fence(name)
        self._seq, self._active = keys.model_seq(name), keys.model_active(name)
        self._meta, self._blob_prefix = keys.model_meta(name), keys.model_blob(name, "")
        self._served = keys.model_served(name)
        self._publish = client.register_script(_PUBLISH_LUA)
        self._rollback = client.register_script(_ROLLBACK_LUA)
        self._fetch_active = client.register_script(lua.source("model_fetch_active"))

    # --- writes ------------------------------------------------------------------
    def publish(self, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None,
                fence: Fence | tuple[int, int] | str | None = None,
                expected_active: int | None = None, model: nn.Module | None = None) -> PublishedVersion:
        """Store a new version and make it active, atomically; raises :class:`StaleFence`.

        ``metadata`` may hold ``validation_loss``, ``samples_trained``, ``producer``,
        ``parent_version`` (default: the version active at publish time) and any other
        JSON-able keys, which go to ``extras``. With ``expected_active`` (0: none yet)
        the publish happens only if that version is still the active one, else
        :class:`Superseded` — a retrain must not undo a newer publish or a rollback.
        With ``model`` (a fresh module of the served architecture) the weights must load
        into it strictly and give a finite output first (:func:`check_loads`).
        """
        fence = Fence.coerce(fence)
        blob = encode_state_dict(state_dict)
        digest = sha256_hex(blob)
        user, parent = metadata_json(self.name, metadata or {}, digest, len(blob), fence, self.producer)
        if model is not None:
            check_loads(self.name, None, model, state_dict)
        expected = "" if expected_active is None else (str(int(expected_active)) if expected_active else "none")
        return self._commit(uuid.uuid4().hex, blob, digest, user, parent, fence, expected)

    def _commit(self, token: str, blob: bytes, digest: str, user: str, parent: str,
                fence: Fence | None, expected_active: str = "") -> PublishedVersion:
        term, index = fence_args(fence)
        staging = keys.model_staging(self.name, token)
        script_keys = [self._fence_key, self._seq, self._active, self._meta, staging,
                       keys.model_receipt(self.name, token)]
        script_args = [term, index, user, parent, self.keep_versions, self.name, digest, self.channel,
                       self._blob_prefix, STAGING_TTL, expected_active]
        for attempt in range(2):
            # One round trip: upload to the staging key, then the script that commits it (or drops it).
            # redis-py may resend both after a dropped connection; the receipt makes that a no-op.
            pipe = self.client.pipeline(transaction=False)
            pipe.set(staging, blob, ex=STAGING_TTL)
            pipe.evalsha(self._publish.sha, len(script_keys), *script_keys, *script_args)
            self.replicas.wait_on(pipe)
            try:
                _, reply, *confirmed = pipe.execute()
                break
            except redis.exceptions.NoScriptError:  # Redis restarted or its script cache was flushed
                if attempt:
                    raise
                self.client.script_load(_PUBLISH_LUA)
        status = _text(reply[0])
        if status == "nostaging":  # only if the staged upload expired or vanished before the script
            raise ModelStoreError(f"model {self.name}: the staged upload expired before its publish script ran")
        if status == "gone":
            raise UnknownVersion(self.name, int(reply[1]), "published, then retired before the reply was read")
        if status == "moved":
            raise Superseded(self.name, expected_active, _text(reply[1]))
        self._raise_if_stale(reply, fence)
        self.replicas.check(confirmed[0] if confirmed else 0, "publish")
        metrics.model_publications.inc()
        return PublishedVersion.from_json(reply[1])

    def rollback(self, to_version: int, fence: Fence | tuple[int, int] | str | None = None,
                 model: nn.Module | None = None) -> PublishedVersion:
        """Point the active version at a retained version (normally an older one; the same
        call rolls forward again). Fenced and atomic like a publish, and announced the same
        way; newer versions are kept and the next publish still gets a fresh number.

        The target is verified first (:meth:`verify`: SHA-256, decode and, with ``model``, a
        strict load and one forward pass), and the script moves the pointer only if the blob
        is still the one verified. Raises :class:`CorruptModel` (the pointer stays),
        :class:`IncompatibleWeights`, :class:`UnknownVersion` or :class:`StaleFence`."""
        fence = Fence.coerce(fence)
        version = int(to_version)
        meta, _, size = self._verified(version, model)
        term, index = fence_args(fence)
        pipe = self.client.pipeline(transaction=False)
        self._rollback(keys=[self._fence_key, self._active, self._meta, self._blob_prefix + str(version)],
                       args=[term, index, version, self.name, self.channel, meta.sha256, size], client=pipe)
        self.replicas.wait_on(pipe)
        reply, *confirmed = pipe.execute()
        status = _text(reply[0])
        if status == "unknown":
            raise UnknownVersion(self.name, version, "not published or no longer retained")
        if status == "changed":
            raise CorruptModel(self.name, version, f"replaced while it was verified: metadata now says sha256 "
                                                   f"{_text(reply[1])[:12] or '?'}… and {int(reply[2])} bytes, "
                                                   f"verified {meta.sha256[:12]}… and {size} bytes")
        self._raise_if_stale(reply, fence)
        self.replicas.check(confirmed[0] if confirmed else 0, "rollback")
        metrics.model_rollbacks.inc()
        return PublishedVersion.from_json(reply[1])

    # --- reads -------------------------------------------------------------------
    def active_version(self) -> int | None:
        """The active version (one GET), or None before the first publish."""
        raw = self.client.get(self._active)
        return None if raw is None else int(raw)

    def fence(self) -> Fence | None:
        """The newest fence this store has accepted (None if never fenced)."""
        return read_fence(self.client, self._fence_key)

    def get_metadata(self, version: int | None = None) -> PublishedVersion:
        """Metadata of ``version`` (default: the active one)."""
        if version is None:
            version = self._require_active()
        raw = self.client.hget(self._meta, int(version))
        if raw is None:
            raise UnknownVersion(self.name, int(version), "not published or no longer retained")
        return self._parse_meta(raw, int(version))

    def list_versions(self) -> list[PublishedVersion]:
        """Every retained version, oldest first."""
        entries = self.client.hgetall(self._meta)
        return sorted((self._parse_meta(raw, int(v)) for v, raw in entries.items()), key=lambda m: m.version)

    def version_numbers(self) -> list[int]:
        """Every retained version number, oldest first (reads no metadata, so a corrupt entry cannot hide the rest)."""
        return sorted(int(v) for v in self.client.hkeys(self._meta) if v.isdigit())

    def fetch(self, version: int | None = None) -> tuple[PublishedVersion, dict[str, torch.Tensor]]:
        """Metadata and CPU tensors of ``version`` (default: the active one), SHA-256 verified
        before decoding. Raises :class:`UnknownVersion` or :class:`CorruptModel`."""
        meta, tensors, _ = self._verified(version)
        return meta, tensors

    def verify(self, version: int | None = None,
               model: nn.Module | None = None) -> tuple[PublishedVersion, dict[str, torch.Tensor]]:
        """:meth:`fetch`, and with ``model`` (a fresh module of the served architecture, e.g.
        ``build_model(settings)``; it is loaded into) :func:`check_loads` as well: what a
        worker checks before serving a version. Raises :class:`UnknownVersion`,
        :class:`CorruptModel` or :class:`IncompatibleWeights`."""
        meta, tensors, _ = self._verified(version, model)
        return meta, tensors

    def _verified(self, version: int | None, model: nn.Module | None = None):
        if version is None:  # pointer, metadata and blob in one step (model_fetch_active.lua)
            reply = self._fetch_active(keys=[self._active, self._meta], args=[self._blob_prefix])
            if not reply:
                raise UnknownVersion(self.name, None, "nothing has been published yet")
            wanted, raw_meta, blob = int(reply[0]), reply[1] or None, reply[2] or None
        else:
            wanted = int(version)
            pipe = self.client.pipeline(transaction=True)
            raw_meta, blob = pipe.hget(self._meta, wanted).get(self._blob_prefix + str(wanted)).execute()
        if raw_meta is None or blob is None:
            raise UnknownVersion(self.name, wanted, "not published or no longer retained")
        meta = self._parse_meta(raw_meta, wanted)
        digest = sha256_hex(blob)
        if digest != meta.sha256:
            raise CorruptModel(self.name, wanted, f"sha256 mismatch: stored blob hashes to {digest[:12]}…, "
                                                  f"metadata says {meta.sha256[:12]}…")
        try:
            tensors = decode_state_dict(blob)
        except ValueError as exc:
            raise CorruptModel(self.name, wanted, str(exc), "unreadable") from exc
        if model is not None:
            check_loads(self.name, wanted, model, tensors)
        return meta, tensors, len(blob)

    # --- who serves what -----------------------------------------------------------
    def report_served(self, report: ServedVersion) -> None:
        """Record what one process serves (the whole hash expires when nobody reports)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self._served, report.node_id, report.to_json())
        pipe.expire(self._served, int(SERVED_MAX_AGE * 10))
        pipe.execute()

    def forget_served(self, node_id: str) -> None:
        """Drop ``node_id``'s report (it stops serving)."""
        self.client.hdel(self._served, node_id)

    def served_versions(self, max_age: float = SERVED_MAX_AGE) -> dict[str, ServedVersion]:
        """Node id -> its latest report, for reports younger than ``max_age`` seconds."""
        reports = (ServedVersion.from_json(raw) for raw in self.client.hgetall(self._served).values())
        return {r.node_id: r for r in reports if r is not None and time.time() - r.at <= max_age}

    # --- notices -----------------------------------------------------------------
    def subscribe(self) -> redis.client.PubSub:
        """A PubSub subscribed to this model's update channel (read it with :meth:`parse_notice`)."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.channel)
        return pubsub

    @staticmethod
    def parse_notice(message: Mapping[str, Any] | None) -> UpdateNotice | None:
        """An :class:`UpdateNotice` from a pub/sub message; None for anything else."""
        return UpdateNotice.from_message(message)

    def notices(self, pubsub: redis.client.PubSub, timeout: float = 1.0) -> Iterator[UpdateNotice | None]:
        """Yield notices forever; yields None after ``timeout`` s of silence (time to re-check the key)."""
        while True:
            yield self.parse_notice(pubsub.get_message(timeout=timeout))

    # --- helpers -----------------------------------------------------------------
    def _require_active(self) -> int:
        active = self.active_version()
        if active is None:
            raise UnknownVersion(self.name, None, "nothing has been published yet")
        return active

    def _parse_meta(self, raw: bytes, version: int) -> PublishedVersion:
        try:
            return PublishedVersion.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptModel(self.name, version, f"undecodable metadata: {exc}", "unreadable") from exc

    def _raise_if_stale(self, reply, fence: Fence | None) -> None:
        if _text(reply[0]) == "stale":
            metrics.fence_rejections.inc()
            raise StaleFence(self.resource, fence, (int(reply[1]), int(reply[2])))


def check_loads(name: str, version: int | None, module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strictly load ``state_dict`` into ``module`` and run it once on zeros of its
    ``omnimind_input_shape`` (set by the model factory): raises ``IncompatibleWeights``,
    or :class:`CorruptModel` (reason ``load``) when the output is not finite.

    >>> m = nn.Linear(2, 1); m.omnimind_input_shape = (2,)
    >>> check_loads("m", 3, m, {"weight": torch.ones(1, 2), "bias": torch.zeros(1)})
    >>> check_loads("m", 3, m, {"weight": torch.full((1, 2), float("nan")), "bias": torch.zeros(1)})
    Traceback (most recent call last):
    ...
    omnimind.models.errors.CorruptModel: model m version 3 is corrupt: its output on zeros is not finite
    """
    load_into(module, state_dict)
    shape = getattr(module, "omnimind_input_shape", None)
    if shape is None:
        return
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    dtype = getattr(module, "omnimind_input_dtype", torch.float32)  # int64: token ids
    with torch.inference_mode():
        output = module.eval()(torch.zeros((1, *shape), dtype=dtype, device=device))
    if isinstance(output, torch.Tensor) and not bool(torch.isfinite(output).all()):
        raise CorruptModel(name, version, "its output on zeros is not finite", "load")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
