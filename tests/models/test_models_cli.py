"""``omnimind model ...`` through an argparse parser built with add_model_commands."""
from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from omnimind import keys
from omnimind.config import Settings
from omnimind.models.cli import add_model_commands
from omnimind.models.factory import build_model
from omnimind.fence import Fence
from omnimind.models.store import ModelStore


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="omnimind")
    add_model_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "mlp.safetensors"
    save_file(build_model(Settings()).state_dict(), str(path))
    return path


@pytest.fixture
def store(redis_client):
    return ModelStore(redis_client)


def test_publish_list_show(store, weights, capsys):
    assert run("model", "publish", str(weights), "--metadata", '{"validation_loss": 0.25, "note": "hand"}',
               "--check") == 0
    out = capsys.readouterr().out
    assert "published version 1" in out
    meta = store.get_metadata(1)
    assert meta.validation_loss == 0.25 and meta.extras == {"note": "hand", "source_file": "mlp.safetensors"}
    assert meta.producer.startswith("cli@") and meta.fence is None
    assert run("model", "publish", str(weights)) == 0
    capsys.readouterr()

    assert run("model", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "active version 2" in lines[0] and "never fenced" in lines[0]
    rows = [line for line in lines if line.strip()[:1].isdigit() or line.startswith("*")]
    assert len(rows) == 2 and rows[-1].startswith("*") and rows[-1].split()[1] == "2"

    assert run("model", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["active"] == 2 and [v["version"] for v in listed["versions"]] == [1, 2]

    assert run("model", "show", "1") == 0
    out = capsys.readouterr().out
    assert "active: no" in out and "validation loss: 0.25" in out and meta.sha256 in out
    assert run("model", "show", "active", "--verify", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["active"] and shown["verified"]


def test_publish_uses_the_newest_fence_unless_given(store, weights, capsys):
    store.publish(build_model(Settings()).state_dict(), fence=(7, 3))  # a leader published
    assert run("model", "publish", str(weights)) == 0
    assert store.get_metadata(2).fence == Fence(7, 3)
    assert run("model", "publish", str(weights), "--fence", "7:2") == 1
    assert "StaleFence" in capsys.readouterr().err
    assert run("model", "publish", str(weights), "--fence", "8:0") == 0
    assert store.fence() == Fence(8, 0) and store.active_version() == 3


def test_rollback(store, weights, capsys):
    for i in range(3):
        store.publish(build_model(Settings()).state_dict(), fence=(2, i))
    pubsub = store.subscribe()
    try:
        assert run("model", "rollback", "--to", "1") == 0
        assert "active version 3 -> 1" in capsys.readouterr().out
        assert store.active_version() == 1
        message = None
        for _ in range(50):
            message = ModelStore.parse_notice(pubsub.get_message(timeout=0.1))
            if message:
                break
        assert message is not None and message.event == "rollback" and message.version == 1
    finally:
        pubsub.close()
    assert run("model", "rollback", "--to", "2", "--fence", "1:9") == 1
    assert "StaleFence" in capsys.readouterr().err
    assert run("model", "rollback", "--to", "99") == 1
    assert "UnknownVersion" in capsys.readouterr().err
    assert store.active_version() == 1
    assert run("model", "publish", str(weights)) == 0
    assert store.active_version() == 4


def test_bad_input(store, weights, tmp_path, capsys):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")
    assert run("model", "publish", str(junk)) == 2
    assert "not a safetensors file" in capsys.readouterr().err
    assert run("model", "publish", str(tmp_path / "missing.safetensors")) == 2
    assert run("model", "publish", str(weights), "--metadata", "{bad") == 2
    assert run("model", "publish", str(weights), "--metadata", "[1]") == 2
    assert run("model", "publish", str(weights), "--metadata", '{"version": 3}') == 2
    assert "set by the store" in capsys.readouterr().err
    assert run("model", "show", "nope") == 2
    assert run("model", "show", "5") == 1
    assert "UnknownVersion" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run("model", "rollback", "--to", "1", "--fence", "garbage")
    with pytest.raises(SystemExit):
        run("model", "rollback", "--to", "0")
    assert store.active_version() is None


def test_check_refuses_weights_of_another_architecture(store, tmp_path, capsys):
    other = tmp_path / "other.safetensors"
    save_file(nn.Linear(3, 1).state_dict(), str(other))
    assert run("model", "publish", str(other), "--check") == 1
    err = capsys.readouterr().err
    assert "IncompatibleWeights" in err and "missing keys" in err and "default_mlp" in err
    assert store.active_version() is None
    assert run("model", "publish", str(other)) == 1  # checked by default
    assert "IncompatibleWeights" in capsys.readouterr().err and store.active_version() is None
    assert run("model", "publish", str(other), "--no-check") == 0  # any safetensors file goes


def test_list_with_nothing_published(store, capsys):
    assert run("model", "list") == 0
    assert "no versions published" in capsys.readouterr().out


def test_unreachable_redis_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("OMNIMIND_REDIS_URL", "redis://127.0.0.1:1/0")
    assert run("model", "list") == 1
    assert "Redis error" in capsys.readouterr().err


def test_named_model_and_keep(redis_client, weights, capsys):
    for _ in range(4):
        assert run("model", "publish", str(weights), "--name", "other", "--keep", "2") == 0
    assert [v.version for v in ModelStore(redis_client, "other").list_versions()] == [3, 4]
    assert ModelStore(redis_client).active_version() is None


def corrupt(redis_client, version: int, name: str = "default") -> None:
    """Flip one bit of a stored blob, as a disk or a stray writer would."""
    blob = bytearray(redis_client.get(keys.model_blob(name, version)))
    blob[-3] ^= 0x01
    redis_client.set(keys.model_blob(name, version), bytes(blob))


def starred(capsys) -> list[str]:
    assert run("model", "list") == 0
    return [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("*")]


def test_rollback_to_a_corrupt_version_is_refused_and_the_old_one_stays_active(store, redis_client, capsys):
    for i in range(3):
        store.publish(build_model(Settings()).state_dict(), fence=(2, i))
    corrupt(redis_client, 2)
    assert run("model", "show", "2", "--verify") == 1
    assert "CorruptModel" in capsys.readouterr().err
    assert run("model", "rollback", "--to", "2") == 1
    err = capsys.readouterr().err
    assert "CorruptModel" in err and "version 2 is corrupt: sha256 mismatch" in err
    assert store.active_version() == 3 and starred(capsys) == ["3"]
    assert run("model", "rollback", "--to", "2", "--no-check") == 1  # the SHA-256 is never skipped
    assert "CorruptModel" in capsys.readouterr().err and store.active_version() == 3
    assert run("model", "rollback", "--to", "1") == 0
    assert "active version 3 -> 1 (sha256" in capsys.readouterr().out and starred(capsys) == ["1"]


def test_rollback_and_show_check_the_architecture(store, capsys):
    store.publish(build_model(Settings()).state_dict(), fence=(1, 0))
    store.publish(nn.Linear(3, 1).state_dict(), fence=(1, 1))  # published without a check
    store.publish(build_model(Settings()).state_dict(), fence=(1, 2))
    assert run("model", "show", "1", "--verify") == 0
    assert "loads into omnimind.models.factory:default_mlp and runs" in capsys.readouterr().out
    assert run("model", "show", "2", "--verify") == 1
    assert "IncompatibleWeights" in capsys.readouterr().err
    assert run("model", "show", "2", "--verify", "--no-check", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["verified"] and not shown["loaded"]
    assert run("model", "rollback", "--to", "2") == 1
    assert "IncompatibleWeights" in capsys.readouterr().err and starred(capsys) == ["3"]
    assert run("model", "rollback", "--to", "2", "--no-check") == 0  # the operator's call
    assert store.active_version() == 2


def test_publish_refuses_weights_whose_output_is_not_finite(store, tmp_path, capsys):
    state = build_model(Settings()).state_dict()
    state["4.bias"] = torch.tensor([float("nan")])
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path))
    assert run("model", "publish", str(path)) == 1
    err = capsys.readouterr().err
    assert "CorruptModel" in err and "output on zeros is not finite" in err
    assert store.active_version() is None
    assert run("model", "publish", str(path), "--no-check") == 0
