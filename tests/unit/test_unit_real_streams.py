"""The pure parts of benchmarks/real_streams.py: send schedule, pacing, served answers, errors, verdicts."""
import math

import numpy as np
import pytest

from benchmarks.real_streams_metrics import (TARGETS, pacing, progressive_error, rolling, sample_errors, schedule,
                                             served_predictions, throughput_verdict, verdict)


def test_schedule_covers_every_row_once_at_the_stream_rate():
    plan = schedule(1250, 8, 50.0)
    assert plan[0].start == 0 and plan[-1].stop == 1250
    assert all(a.stop == b.start for a, b in zip(plan, plan[1:]))
    assert plan[-1].stop - plan[-1].start == 1250 % 8  # the last batch is short
    assert [b.due_s for b in plan[:3]] == pytest.approx([0.0, 0.16, 0.32])
    assert plan[-1].due_s == pytest.approx(plan[-1].start / 50.0)


@pytest.mark.parametrize("args", [(10, 0, 50.0), (10, 8, 0.0), (-1, 8, 50.0)])
def test_schedule_refuses_nonsense(args):
    with pytest.raises(ValueError):
        schedule(*args)


def test_pacing_on_time_achieves_the_planned_rate():
    plan = schedule(400, 8, 50.0)
    p = pacing(plan, [b.due_s for b in plan])
    assert p["achieved_rate"] == pytest.approx(50.0) and p["planned_rate"] == pytest.approx(50.0)
    assert p["late_max_s"] == 0.0 and p["late_over_1s"] == 0


def test_pacing_reports_a_farm_that_cannot_keep_up():
    plan = schedule(400, 8, 50.0)
    sent = [b.due_s * 2 for b in plan]  # every send twice as late as due: half the rate
    p = pacing(plan, sent)
    assert p["achieved_rate"] == pytest.approx(400 / (plan[-1].due_s * 2 + 0.16))
    assert p["achieved_rate"] < 26
    assert p["late_max_s"] == pytest.approx(plan[-1].due_s)
    assert p["late_over_1s"] == sum(1 for b in plan if b.due_s > 1.0)


def test_served_logits_are_read_as_their_argmax():
    classes = ["brickface", "cement", "sky"]
    result = {"outputs": [[0.1, 0.2, 3.0], [5.0, -1.0, 0.0]], "model_version": 0}
    assert served_predictions(result, "multiclass", classes) == ["sky", "brickface"]
    assert served_predictions({"outputs": [[-0.3], [0.4]]}, "binary", [False, True]) == [False, True]


def test_classifier_heads_are_read_per_example():
    classes = [False, True]
    answer = {"label": "True", "probabilities": [0.2, 0.8], "top_k": [["True", 0.8], ["False", 0.2]]}
    result = {"outputs": [answer, {**answer, "label": "False"}], "labels": ["False", "True"]}
    assert served_predictions(result, "binary", classes) == [True, False]  # the label wins
    no_label = {k: v for k, v in answer.items() if k != "label"}
    assert served_predictions({"outputs": [no_label]}, "binary", classes) == [True]  # then top_k
    only_p = {"probabilities": [0.7, 0.3]}
    assert served_predictions({"outputs": [only_p], "labels": ["True", "False"]}, "binary", classes) == [True]
    assert served_predictions({"outputs": [{"probabilities": {"False": 0.3, "True": 0.7}}]},
                              "binary", classes) == [True]
    assert served_predictions({"outputs": [{"top_k": [{"label": "sky", "probability": 0.9}]}]},
                              "multiclass", ["grass", "sky"]) == ["sky"]


def test_a_head_without_labels_yet_predicts_nothing():
    empty = {"label": None, "probabilities": [], "top_k": []}
    assert served_predictions({"outputs": [empty], "labels": []}, "binary", [False, True]) == [None]
    assert sample_errors("binary", [True], [None]).tolist() == [1.0]


def test_integer_labels_are_class_indices():
    # a head that learned the class indices this benchmark sends as targets
    result = {"outputs": [{"label": 2, "probabilities": [0.1, 0.2, 0.7]}], "labels": [0, 1, 2]}
    assert served_predictions(result, "multiclass", ["brickface", "cement", "sky"]) == ["sky"]
    assert served_predictions({"outputs": [{"probabilities": [0.1, 0.9]}], "labels": [1, 0]},
                              "binary", [False, True]) == [False]


def test_regression_reads_the_first_output():
    assert served_predictions({"outputs": [[1.5], [2.5]]}, "regression", []) == [1.5, 2.5]
    assert served_predictions({"outputs": [3.0, 4.0]}, "regression", []) == [3.0, 4.0]


def test_errors_count_missing_predictions_as_wrong():
    assert sample_errors("binary", [True, False, True], [True, None, False]).tolist() == [0.0, 1.0, 1.0]
    errors = sample_errors("regression", [1.0, 2.0, 3.0], [1.5, None, float("nan")])
    assert errors[0] == 0.5 and math.isinf(errors[1]) and math.isinf(errors[2])
    assert progressive_error(sample_errors("multiclass", list("aabb"), list("abbb"))) == 0.25
    with pytest.raises(ValueError):
        sample_errors("binary", [True], [])
    with pytest.raises(ValueError):
        progressive_error([])


def test_rolling_is_the_trailing_mean():
    rng = np.random.default_rng(0)
    errors = rng.random(300)
    got = rolling(errors, 50)
    want = [errors[max(0, i - 49):i + 1].mean() for i in range(300)]
    assert got == pytest.approx(want)
    assert rolling(errors, 1) == pytest.approx(errors)


def test_verdict_marks_each_target_and_picks_the_best_river_model():
    v = verdict(0.12, 0.11, {"logistic": 0.10, "kNN": 0.14, "ARF": float("inf")})
    assert v["best_river"] == "logistic" and v["best_river_error"] == 0.10
    assert v["vs_deep_river"] == pytest.approx(12 / 11) and v["pass_deep_river"] is True
    assert v["vs_best_river"] == pytest.approx(1.2) and v["pass_best_river"] is True
    v = verdict(0.606, 0.116, {"logistic": 0.107})
    assert v["pass_deep_river"] is False and v["pass_best_river"] is False
    v = verdict(0.2, None, {})
    assert v["pass_deep_river"] is None and v["pass_best_river"] is None and v["best_river"] is None


def test_throughput_verdict_needs_ten_times_deep_river():
    assert TARGETS["learn_throughput_vs_deep_river"] == 10.0
    assert throughput_verdict(8000.0, 800.0)["pass"] is True
    assert throughput_verdict(7999.0, 800.0)["pass"] is False
    assert throughput_verdict(None, 800.0)["pass"] is None


def test_window_rates_and_the_best_run():
    from benchmarks.real_streams_metrics import best_and_median, window_rates

    durations = [0.001] * 500 + [0.004] * 250 + [0.001] * 10  # a disturbed run, and a short tail dropped
    rates = window_rates(durations, 250)
    assert rates == pytest.approx([1000.0, 1000.0, 250.0])
    assert best_and_median(rates) == {"best": pytest.approx(1000.0), "median": pytest.approx(1000.0)}
    assert window_rates([0.002] * 3, 250) == pytest.approx([500.0])  # only a short run: it counts
    with pytest.raises(ValueError):
        window_rates([], 10)
