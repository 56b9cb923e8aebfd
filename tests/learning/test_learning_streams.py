"""The drifting streams of ``omnimind stream`` and benchmarks/freshness.py (pure: no Redis, no farm)."""
import numpy as np
import pytest

from omnimind.stream import NOISE, STREAMS, Change, StreamDriver, learner_window, make_stream, plot_trace

RATE, PHASE = 100, 4.0  # 400 samples per phase


def residual(stream, lo, hi):
    """Mean squared gap between the labels and the noise-free targets over samples [lo, hi)."""
    target = np.concatenate([stream.expected(stream.x[i:i + 1], i) for i in range(lo, hi)])
    return float(np.mean((stream.y[lo:hi] - target) ** 2))


@pytest.mark.parametrize("name", STREAMS)
def test_every_stream_has_its_shape_and_is_reproducible(name):
    stream = make_stream(name, n_features=16, rate=RATE, phase_seconds=PHASE, seed=3)
    phases = {"abrupt": 2, "gradual": 2, "recurring": 3, "friedman": 3}[name]
    assert stream.x.shape == (phases * 400, 16) and stream.y.shape == (phases * 400,)
    assert stream.x.dtype == np.float32 and np.isfinite(stream.x).all() and np.isfinite(stream.y).all()
    assert [c.at for c in stream.changes] == [400 * k for k in range(1, phases)]
    again = make_stream(name, n_features=16, rate=RATE, phase_seconds=PHASE, seed=3)
    other = make_stream(name, n_features=16, rate=RATE, phase_seconds=PHASE, seed=4)
    assert np.array_equal(stream.x, again.x) and np.array_equal(stream.y, again.y)
    assert not np.array_equal(stream.y, other.y)


def test_abrupt_change_moves_weights_and_offset_at_once():
    stream = make_stream("abrupt", 16, RATE, PHASE, seed=0)
    (wa, ba), (wb, bb) = stream.concepts
    assert ba == 0.0 and abs(bb) == 3.0 and not np.allclose(wa, wb)
    assert stream.weights(399) == {0: 1.0} and stream.weights(400) == {1: 1.0}
    # Labels follow A, then B, with only the label noise around them.
    assert residual(stream, 0, 400) == pytest.approx(NOISE ** 2, rel=0.3)
    assert residual(stream, 400, 800) == pytest.approx(NOISE ** 2, rel=0.3)
    old_fit = np.mean((stream.y[400:] - (stream.x[400:] @ wa + ba)) ** 2)
    assert old_fit > 100 * NOISE ** 2  # the old concept is far off after the change


def test_recurring_concept_returns_to_the_first_one():
    stream = make_stream("recurring", 16, RATE, PHASE, seed=1)
    assert [(c.at, c.after, c.label) for c in stream.changes] == [(400, 1, "A→B"), (800, 0, "B→A")]
    assert stream.weights(200) == stream.weights(1000) == {0: 1.0} and stream.weights(600) == {1: 1.0}
    x = stream.x[:5]
    assert np.allclose(stream.expected(x, 0), stream.expected(x, 1199))
    assert residual(stream, 800, 1200) == pytest.approx(NOISE ** 2, rel=0.3)


def test_gradual_drift_is_rivers_sigmoid_mixture():
    stream = make_stream("gradual", 16, RATE, PHASE, seed=2, width_seconds=2.0)  # 200 samples wide
    (change,) = stream.changes
    assert (change.at, change.width) == (400, 200)
    assert stream.weights(0)[0] > 0.999 and stream.weights(799)[1] > 0.999  # river's sigmoid: tails, no edges
    assert stream.weights(399)[1] == pytest.approx(0.5, abs=0.01)
    assert sum(stream.weights(420).values()) == pytest.approx(1.0)
    (wa, ba), (wb, bb) = stream.concepts

    def share_of_b(lo, hi):  # which concept each label is closer to
        ya, yb = stream.x[lo:hi] @ wa + ba, stream.x[lo:hi] @ wb + bb
        return float(np.mean(np.abs(stream.y[lo:hi] - yb) < np.abs(stream.y[lo:hi] - ya)))

    assert share_of_b(0, 200) < 0.05 and share_of_b(600, 800) > 0.95
    assert 0.2 < share_of_b(350, 450) < 0.8


def test_friedman_has_no_closed_form_and_pads_features():
    stream = make_stream("friedman", 16, RATE, PHASE, seed=0)
    assert stream.concepts == [] and stream.expected(stream.x[:3], 0) is None
    assert np.all(stream.x[:, 10:] == 0) and 0 <= stream.x[:, :10].min() and stream.x[:, :10].max() <= 1
    assert [c.label for c in stream.changes] == ["1→2", "2→1"]


def test_batches_cover_the_stream_in_order():
    stream = make_stream("abrupt", 4, RATE, 1.0, seed=0)
    starts = [start for start, x, y in stream.batches(32)]
    assert starts == list(range(0, 200 - 31, 32))
    start, x, y = next(iter(stream.batches(32)))
    assert np.array_equal(x, stream.x[:32]) and np.array_equal(y, stream.y[:32])


def test_unknown_stream_is_refused():
    with pytest.raises(ValueError, match="unknown stream"):
        make_stream("sideways", 16, RATE, PHASE)


def test_change_progress_abrupt_and_gradual():
    assert Change(10, 1).progress(9) == 0.0 and Change(10, 1).progress(10) == 1.0
    gradual = Change(100, 1, width=40)
    assert gradual.progress(0) < 1e-4 and gradual.progress(99) == pytest.approx(0.5) and gradual.progress(300) > 0.9999


def test_learner_window_reads_the_status_json():
    status = {"model_version": 3, "prequential": {"2": {"loss": 0.5, "count": 10}, "3": {"loss": 0.1, "count": 4}}}
    assert learner_window(status) == (0.1, 4)
    assert learner_window({"model_version": 9, "prequential": {"2": {"loss": 0.5, "count": 10}}}) == (0.5, 10)
    assert learner_window({}) == (None, 0)
    assert learner_window({"model_version": 1, "prequential": {"1": {"loss": float("nan"), "count": 2}}}) == (None, 2)


def test_probe_set_is_fixed_per_seed_and_sized():
    stream = make_stream("abrupt", 16, RATE, PHASE, seed=0)
    a, b = StreamDriver(None, None, stream, seed=5), StreamDriver(None, None, stream, seed=5)
    assert np.array_equal(a.probe_x, b.probe_x) and a.probe_x.shape == (256, 16)
    assert StreamDriver(None, None, stream, probe_size=64).probe_x.shape == (64, 16)
    assert a.interval == pytest.approx(32 / RATE)


def test_plot_trace_marks_changes_and_versions(tmp_path):
    from matplotlib.figure import Figure

    trace = {"stream": "abrupt", "send_s": 4.0,
             "probes": {"t": [0, 1, 2, 3], "mse": [0.1, 5.0, 0.2, None], "version": [0, 0, 1, 1]},
             "batches": {"t": [0, 1], "mse": [1.0, 2.0]},
             "changes": [{"t": 1.0, "width": 1, "width_s": 0.0, "label": "A→B", "at": 100}]}
    fig = Figure()
    ax = fig.subplots()
    plot_trace(trace, ax)
    labels = ax.get_legend_handles_labels()[1]
    assert {"concept change", "served version changed", "served MSE on the probe set"} <= set(labels)
    fig.savefig(tmp_path / "trace.png")
    assert (tmp_path / "trace.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
