"""``omnimind model ...``: list, show, roll back and publish model versions, and ``check`` the configured model.

``omnimind/cli.py`` wires these in with ``add_model_commands(sub)``. Every
subcommand sets ``func(args) -> exit code``: 0 done, 1 refused by the store
(stale fence, unknown version, corrupt blob, weights that do not fit) or Redis
unreachable, 2 bad input (unreadable file, bad JSON, bad ``--fence``).

Nothing is made active that workers could not serve: ``rollback`` and
``publish`` check the weights first (SHA-256 and decode for a stored version,
then a strict load into the configured model factory's architecture and one
forward pass); ``--no-check`` skips the architecture part (for a machine that
cannot import the model factory), never the SHA-256. ``show N --verify`` runs
the same checks.

Manual writes are fenced too. Without ``--fence`` the CLI uses the newest
fence the store has seen, which is accepted (equal tokens are), so an
operator's publish or rollback works while a leader publishes with its own
token; with ``--fence TERM:INDEX`` it is checked like any other writer's.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="omnimind")
>>> _ = add_model_commands(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["model", "rollback", "--to", "3", "--fence", "2:9"])
>>> args.to, args.fence, args.check, args.func.__name__
(3, Fence(term=2, index=9), True, 'cmd_model_rollback')
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from omnimind.config import Settings
from omnimind.errors import OmniMindError
from omnimind.fence import Fence

__all__ = ["add_model_commands"]


def _fence_arg(text: str) -> Fence:
    try:
        return Fence.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def add_model_commands(subparsers) -> argparse.ArgumentParser:
    """Add ``model list | show | rollback | publish`` to an argparse subparsers object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default="default", help="model name (default: %(default)s)")
    common.add_argument("--keep", type=_positive_int, default=None, metavar="N",
                        help="versions to retain when publishing (default: $OMNIMIND_MODEL_KEEP_VERSIONS or 10)")
    checked = argparse.ArgumentParser(add_help=False)
    checked.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                         help="also load the weights into the configured model factory's architecture and run it "
                              "once (default: on; --no-check verifies SHA-256 and decoding only)")

    model = subparsers.add_parser("model", help="list, show, roll back and publish model versions")
    sub = model.add_subparsers(dest="model_command", required=True)

    ls = sub.add_parser("list", parents=[common], help="retained versions; * marks the active one")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_model_list)

    show = sub.add_parser("show", parents=[common, checked], help="metadata of one version")
    show.add_argument("version", help="a version number, or 'active'")
    show.add_argument("--verify", action="store_true",
                      help="also fetch the blob, check its SHA-256, decode it and (unless --no-check) load it")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_model_show)

    rollback = sub.add_parser("rollback", parents=[common, checked],
                              help="make a retained version active (verified first; fenced, atomic)")
    rollback.add_argument("--to", type=_positive_int, required=True, metavar="VERSION")
    rollback.add_argument("--fence", type=_fence_arg, metavar="TERM:INDEX",
                          help="fencing token (default: the newest one the store has seen)")
    rollback.set_defaults(func=cmd_model_rollback)

    publish = sub.add_parser("publish", parents=[common, checked], help="publish weights from a .safetensors file")
    publish.add_argument("file", type=Path, metavar="FILE.safetensors")
    publish.add_argument("--metadata", default=None, metavar="JSON",
                         help='JSON object, e.g. \'{"validation_loss": 0.12, "note": "hand-tuned"}\'')
    publish.add_argument("--fence", type=_fence_arg, metavar="TERM:INDEX",
                         help="fencing token (default: the newest one the store has seen)")
    publish.set_defaults(func=cmd_model_publish)

    check = sub.add_parser("check", help="build the configured model against its spec (head, signature) and run "
                                          "one batch and one learning step; no Redis needed")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=cmd_model_check)
    return model


def _guarded(command):
    """Turn the store's refusals and an unreachable Redis into a message and exit code 1."""
    def run(args) -> int:
        import redis

        try:
            return command(args)
        except OmniMindError as exc:
            print(f"omnimind model: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        except redis.RedisError as exc:
            print(f"omnimind model: Redis error: {exc}", file=sys.stderr)
            return 1

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    return run


def _settings():
    return Settings.from_env()


def _store(args, settings=None):
    from omnimind.models.store import ModelStore
    from omnimind.redis_client import redis_client
    from omnimind.replication import ReplicaQuorum

    settings = settings or _settings()
    keep = args.keep if args.keep is not None else settings.model_keep_versions
    client = redis_client(settings.redis_url, settings.sentinel_master)
    producer = f"cli@{settings.node_id or socket.gethostname()}"
    return ModelStore(client, args.name, keep_versions=keep, producer=producer,
                      replicas=ReplicaQuorum.from_settings(settings))


def _architecture(args, settings):
    """A fresh module of the served architecture to check weights against (None with --no-check)."""
    if not args.check:
        return None
    from omnimind.models.factory import build_model

    return build_model(settings)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _describe(meta, active: int | None) -> str:
    loss = "-" if meta.validation_loss is None else f"{meta.validation_loss:.6g}"
    samples = "-" if meta.samples_trained is None else str(meta.samples_trained)
    fence = "-" if meta.fence is None else str(meta.fence)
    mark = "*" if meta.version == active else " "
    return (f"{mark} {meta.version:>7}  {_when(meta.created_at)}  {meta.sha256[:12]}  {meta.size_bytes:>11}  "
            f"{loss:>10}  {samples:>8}  {fence:>9}  {meta.producer}")


@_guarded
def cmd_model_list(args) -> int:
    store = _store(args)
    active, versions, fence = store.active_version(), store.list_versions(), store.fence()
    if args.json:
        print(json.dumps({"name": store.name, "active": active, "fence": None if fence is None else list(fence),
                          "versions": [v.as_dict() for v in versions]}, indent=2))
        return 0
    print(f"model {store.name}: active version {active if active is not None else '-'}, "
          f"newest fence {fence if fence is not None else '- (never fenced)'}")
    if not versions:
        print("no versions published")
        return 0
    print(f"  {'VERSION':>7}  {'CREATED (UTC)':19}  {'SHA256':12}  {'BYTES':>11}  {'VAL_LOSS':>10}  "
          f"{'SAMPLES':>8}  {'FENCE':>9}  PRODUCER")
    for meta in versions:
        print(_describe(meta, active))
    return 0


@_guarded
def cmd_model_show(args) -> int:
    settings = _settings()
    store = _store(args, settings)
    if args.version == "active":
        version = None
    else:
        try:
            version = _positive_int(args.version)
        except argparse.ArgumentTypeError as exc:
            print(f"omnimind model show: {exc}", file=sys.stderr)
            return 2
    meta = store.verify(version, _architecture(args, settings))[0] if args.verify else store.get_metadata(version)
    active = store.active_version()
    if args.json:
        print(json.dumps({**meta.as_dict(), "active": meta.version == active, "verified": bool(args.verify),
                          "loaded": bool(args.verify and args.check)}, indent=2))
        return 0
    for label, value in (
        ("model", meta.name), ("version", meta.version), ("active", "yes" if meta.version == active else "no"),
        ("parent version", meta.parent_version if meta.parent_version is not None else "-"),
        ("created (UTC)", _when(meta.created_at)), ("sha256", meta.sha256), ("size (bytes)", meta.size_bytes),
        ("validation loss", meta.validation_loss if meta.validation_loss is not None else "-"),
        ("samples trained", meta.samples_trained if meta.samples_trained is not None else "-"),
        ("fence", meta.fence if meta.fence is not None else "-"), ("producer", meta.producer),
        ("extras", json.dumps(meta.extras, sort_keys=True)),
    ):
        print(f"{label:>16}: {value}")
    if args.verify:
        loads = f", loads into {settings.model_factory} and runs" if args.check else ""
        print(f"{'verified':>16}: sha256 matches, safetensors decodes{loads}")
    return 0


@_guarded
def cmd_model_rollback(args) -> int:
    settings = _settings()
    store = _store(args, settings)
    fence = args.fence if args.fence is not None else store.fence()
    previous = store.active_version()
    meta = store.rollback(args.to, fence, model=_architecture(args, settings))  # verifies before the pointer moves
    checked = f", loads into {settings.model_factory}" if args.check else ""
    print(f"model {store.name}: active version {previous} -> {meta.version} "
          f"(sha256 {meta.sha256[:12]} verified{checked}, fence {fence if fence is not None else '-'})")
    return 0


@_guarded
def cmd_model_publish(args) -> int:
    from omnimind.models.errors import IncompatibleWeights
    from omnimind.models.serialization import decode_state_dict

    try:
        blob = args.file.read_bytes()
    except OSError as exc:
        print(f"omnimind model publish: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        state_dict = decode_state_dict(blob)
    except ValueError as exc:
        print(f"omnimind model publish: {args.file} is not a safetensors file ({exc})", file=sys.stderr)
        return 2
    metadata = {}
    if args.metadata:
        try:
            metadata = json.loads(args.metadata)
        except json.JSONDecodeError as exc:
            print(f"omnimind model publish: --metadata must be JSON: {exc}", file=sys.stderr)
            return 2
        if not isinstance(metadata, dict):
            print("omnimind model publish: --metadata must be a JSON object", file=sys.stderr)
            return 2
    settings = _settings()
    store = _store(args, settings)
    fence = args.fence if args.fence is not None else store.fence()
    metadata.setdefault("source_file", args.file.name)
    try:
        meta = store.publish(state_dict, metadata, fence, model=_architecture(args, settings))
    except IncompatibleWeights as exc:  # name the architecture it was checked against
        raise IncompatibleWeights(f"{exc.args[0]} (model factory {settings.model_factory})") from exc
    except ValueError as exc:  # reserved or non-JSON metadata
        print(f"omnimind model publish: {exc}", file=sys.stderr)
        return 2
    print(f"model {store.name}: published version {meta.version} (sha256 {meta.sha256[:12]}, "
          f"{meta.size_bytes} bytes, parent {meta.parent_version}, fence {fence if fence is not None else '-'})")
    return 0


def cmd_model_check(args) -> int:
    """Dry run of the configured model: 0 when it fits its spec, 1 with the reason when not."""
    from omnimind.models.check import check_model

    try:
        report = check_model(_settings())
    except OmniMindError as exc:
        print(f"omnimind model check: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model factory {report['factory']}: fits a {report['head']} head (loss {report['loss']})")
    print(f"  input  {report['input']['dtype']} {report['input']['shape']}"
          + (f" from {len(report['signature']['inputs'])} named input(s)" if report["signature"] else ""))
    print(f"  output width {report['output_width']}, {report['parameters']} parameters")
    if report["labels"] is not None:
        print(f"  labels {report['labels']} (unseen labels: {report['label_policy']})")
    print(f"  preprocessing state: {', '.join(report['preprocessing']) or 'none'}")
    print(f"  example request {json.dumps(report['example_request'])} -> {json.dumps(report['example_output'])}")
    print("  one learning step: ok")
    return 0
