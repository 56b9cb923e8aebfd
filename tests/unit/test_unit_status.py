"""The status screen's learner lines, from hand-made status dicts (no Redis)."""
import pytest

from omnimind.status import FarmStatus, render, render_learner

NOW = 1_700_000_000.0

FRESHNESS = {
    "champion_version": 3,
    "champion_loss": 0.0123,
    "challenger_loss": 0.0101,
    "window_samples": 256,
    "publishing": True,
    "last_publication": {"version": 4, "reason": "challenger_drift", "at": NOW - 2.1,
                         "champion_loss": 0.02, "challenger_loss": 0.0123},
    "last_refusal": {"reason": "gate", "at": NOW - 30.0},
    "refusals": {"gate": 3, "diverged": 1, "rate_limited": 0},
    "lag_s": 0.8,
}


def learner(**extra):
    return {
        "node_id": "training@host", "samples": 4096, "batches": 128, "learning_rate": 0.01,
        "drift_events": 1, "replay_size": 1000, "model_version": 3,
        "prequential": {"3": {"count": 256, "loss": 0.0123, "accuracy": None}}, **extra,
    }


def test_live_window_line_and_refusals():
    lines = render_learner(learner(freshness=FRESHNESS), now=NOW)
    assert lines == [
        "LEARNER training@host  samples=4096 batches=128 lr=0.01 drifts=1 replay=1000",
        "  v3: prequential loss 0.0123 over 256 samples",
        "  live window: champion v3 loss 0.0123 | challenger loss 0.0101 (256 samples) | "
        "last publication v4 (challenger_drift) 2.1s ago | lag 0.8s",
        "  refusals: diverged=1, gate=3 (last: gate 30.0s ago)",
    ]


def test_render_passes_now_to_the_learners():
    status = FarmStatus([], {"training": 0}, 0, [learner(freshness=FRESHNESS)], [])
    assert "last publication v4 (challenger_drift) 2.1s ago" in render(status, now=NOW)


def test_versions_not_scored_yet_are_not_listed():
    # A resumed checkpoint's version with an empty window: no "nan over 0 samples".
    lines = render_learner(learner(prequential={
        "0": {"count": 512, "loss": 0.25},
        "1": {"count": 0, "loss": float("nan"), "accuracy": None},
        "2": {"loss": 0.5},
        "3": None,
    }), now=NOW)
    assert lines[1:] == ["  v0: prequential loss 0.2500 over 512 samples"]


def test_a_diverged_window_still_shows_its_nan():
    lines = render_learner(learner(prequential={"5": {"count": 32, "loss": float("nan")}}), now=NOW)
    assert lines[1] == "  v5: prequential loss nan over 32 samples"


@pytest.mark.parametrize("freshness", [None, {}, "soon", {"refusals": {}}, {"last_publication": None}])
def test_no_freshness_to_show_adds_no_line(freshness):
    assert render_learner(learner(freshness=freshness), now=NOW) == render_learner(learner(), now=NOW)


@pytest.mark.parametrize(
    "freshness, line",
    [
        ({"champion_version": 0}, "  live window: champion v0"),
        ({"champion_loss": 1.5, "lag_s": None}, "  live window: champion loss 1.5000"),
        ({"window_samples": 64}, "  live window: (64 samples)"),
        ({"challenger_loss": 2.0, "window_samples": None}, "  live window: challenger loss 2.0000"),
        ({"last_publication": {"version": 7}}, "  live window: last publication v7"),
        ({"last_publication": {"reason": "scheduled", "at": None}}, "  live window: last publication (scheduled)"),
        ({"last_publication": {"version": 2, "at": NOW - 600}}, "  live window: last publication v2 10m ago"),
        ({"lag_s": 12.25, "publishing": False}, "  live window: lag 12.2s | publishing off"),
        ({"drift_at_sample": 1000}, "  live window: drift at sample 1000"),
        # Wrong types are skipped, not printed or crashed on.
        ({"champion_version": "3", "champion_loss": True, "lag_s": 0.5}, "  live window: lag 0.5s"),
    ],
)
def test_partial_freshness_shows_what_is_there(freshness, line):
    assert render_learner(learner(freshness=freshness), now=NOW)[2:] == [line]


def test_refusals_without_a_last_one_and_a_last_one_without_counts():
    assert render_learner(learner(freshness={"refusals": {"noise": 2, "flood": None}}), now=NOW)[2:] == [
        "  refusals: noise=2"
    ]
    assert render_learner(learner(freshness={"last_refusal": {"reason": "diverged", "at": NOW + 5}}), now=NOW)[2:] == [
        "  refusals: none counted (last: diverged 0.0s ago)"
    ]


def test_a_learner_from_another_release_renders():
    assert render_learner({"node_id": "old@host"}, now=NOW) == [
        "LEARNER old@host  samples=? batches=? lr=? drifts=? replay=?"
    ]


# --- who serves which model version ------------------------------------------------------
from omnimind.models.metadata import ServedVersion  # noqa: E402
from omnimind.scaling.node_info import NodeInfo, NodeStatus  # noqa: E402
from omnimind.status import SERVING_MAX_AGE_S, model_serving  # noqa: E402


def node(node_id, status=NodeStatus.HEALTHY):
    return NodeInfo(node_id, "127.0.0.1", 0, ["inference"], status=status)


def served(node_id, version, active=None, age=1.0, **extra):
    return ServedVersion(node_id, version, version if active is None else active, at=NOW - age, **extra)


def serving_lines(reports, active, nodes):
    serving = model_serving(reports, active, nodes, now=NOW)
    return serving, render(FarmStatus([], {}, 0, [], [], serving), now=NOW).splitlines()


def test_one_version_everywhere():
    serving, lines = serving_lines([served("a@h", 3), served("b@h", 3)], 3, [node("a@h"), node("b@h")])
    assert serving["versions"] == {"3": ["a@h", "b@h"]} and serving["mixed"] is False
    assert "MODEL default  serving v3 on 2 nodes (active v3)" in lines
    assert not any("MIXED" in line for line in lines)


def test_disagreeing_workers_are_mixed_and_the_refusal_is_named():
    reports = [served("a@h", 7), served("b@h", 6, active=7, refused=7, reason="checksum"), served("c@h", 7)]
    serving, lines = serving_lines(reports, 7, [node("a@h"), node("b@h"), node("c@h")])
    assert serving["mixed"] is True and serving["versions"] == {"6": ["b@h"], "7": ["a@h", "c@h"]}
    assert "MODEL default  MIXED: v6 on b@h (refused v7: checksum) | v7 on a@h, c@h (active v7)" in lines
    (b,) = [n for n in serving["nodes"] if n["node_id"] == "b@h"]
    assert b == {"node_id": "b@h", "version": 6, "active": 7, "refused": 7, "reason": "checksum", "fallback": True,
                 "age_s": 1.0}


def test_reports_of_departed_unreachable_or_silent_nodes_are_ignored():
    reports = [
        served("a@h", 5),
        served("gone@h", 4),  # deregistered: not in the registry
        served("dead@h", 3),  # three heartbeats missed
        served("quiet@h", 2, age=SERVING_MAX_AGE_S + 1),  # stopped reporting
    ]
    nodes = [node("a@h"), node("dead@h", NodeStatus.UNREACHABLE), node("quiet@h"), node("slow@h", NodeStatus.DEGRADED)]
    serving, lines = serving_lines(reports + [served("slow@h", 5)], 5, nodes)
    assert serving["versions"] == {"5": ["a@h", "slow@h"]} and not serving["mixed"]
    assert [n["node_id"] for n in serving["nodes"]] == ["a@h", "slow@h"]


def test_nothing_reported_yet():
    assert serving_lines([], 2, [node("a@h")])[1][-1] == "MODEL default  no serving process has reported (active v2)"
    assert not any(line.startswith("MODEL") for line in serving_lines([], None, [])[1])
    # An older status (no serving read) renders as before and says so in JSON.
    status = FarmStatus([], {}, 0, [], [])
    assert not any(line.startswith("MODEL") for line in render(status, now=NOW).splitlines())
    assert status.as_dict()["serving"] is None


def test_serving_is_in_the_json():
    import json

    serving = model_serving([served("a@h", 1), served("b@h", 2)], 2, [node("a@h"), node("b@h")], now=NOW)
    out = json.loads(json.dumps(FarmStatus([], {}, 0, [], [], serving).as_dict()))
    assert out["serving"]["mixed"] is True and out["serving"]["versions"] == {"1": ["a@h"], "2": ["b@h"]}
