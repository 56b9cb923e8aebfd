import numpy as np
import pytest

from omnimind.learning import ConceptDriftDetector, CusumDriftMethod, DRIFT_METHODS


def _first_alarm(detector, errors):
    for i, e in enumerate(errors.tolist()):
        if detector.update_error(e):
            return i
    return None


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("shift, max_delay", [(5.0, 10), (1.0, 150), (-1.0, 150)])
def test_known_change_point_is_found_soon_after_it(seed, shift, max_delay):
    rng = np.random.default_rng(seed)
    change = 500
    errors = np.concatenate([rng.normal(0, 1, change), rng.normal(shift, 1, 1000)])
    alarm = _first_alarm(ConceptDriftDetector(window_size=100), errors)
    assert alarm is not None and change <= alarm < change + max_delay


@pytest.mark.parametrize("seed", range(8))
def test_no_false_alarm_over_long_stable_streams(seed):
    errors = np.random.default_rng(10_000 + seed).normal(3.0, 2.5, 50_000)  # any mean/scale
    assert _first_alarm(ConceptDriftDetector(window_size=100), errors) is None


def test_warm_up_window_never_alarms_even_on_wild_data():
    detector = ConceptDriftDetector(window_size=50)
    wild = np.random.default_rng(0).standard_cauchy(50) * 1e6
    assert _first_alarm(detector, wild) is None


def test_warning_precedes_drift_and_detector_restarts():
    rng = np.random.default_rng(1)
    detector = ConceptDriftDetector(window_size=100)
    for e in rng.normal(0, 1, 300).tolist():
        detector.update_error(e)
    warned = False
    for e in rng.normal(1.0, 1, 300).tolist():
        warned |= detector.in_warning
        if detector.update_error(e):
            break
    assert warned and detector.drift_count == 1
    # After a drift the new concept is the reference: no alarm on it.
    assert _first_alarm(detector, rng.normal(1.0, 1, 5000)) is None


def test_constant_errors_then_any_change_is_drift():
    detector = ConceptDriftDetector(window_size=10)
    assert _first_alarm(detector, np.zeros(200)) is None
    assert detector.update_error(0.5)


def test_update_uses_actual_minus_prediction():
    a, b = ConceptDriftDetector(window_size=20), ConceptDriftDetector(window_size=20)
    rng = np.random.default_rng(2)
    for p, t in rng.normal(0, 1, (400, 2)).tolist():
        assert a.update(p, t + (3 if a.samples_seen > 200 else 0)) == b.update_error(
            t + (3 if b.samples_seen > 200 else 0) - p
        )


@pytest.mark.parametrize("method", DRIFT_METHODS)
def test_every_method_detects_a_large_shift(method):
    rng = np.random.default_rng(3)
    detector = ConceptDriftDetector(window_size=100, method=method, seed=3)
    errors = np.concatenate([rng.normal(0, 1, 1000), rng.normal(5, 1, 1000)])
    alarm = _first_alarm(detector, errors)
    assert alarm is not None and alarm >= 900


@pytest.mark.parametrize("method", DRIFT_METHODS)
def test_state_dict_round_trip_gives_identical_decisions(method):
    rng = np.random.default_rng(4)
    errors = np.concatenate([rng.normal(0, 1, 400), rng.normal(2, 1, 600)])
    a = ConceptDriftDetector(window_size=100, method=method, seed=1)
    for e in errors[:450].tolist():
        a.update_error(e)
    b = ConceptDriftDetector(method="cusum")
    b.load_state_dict(a.state_dict())
    assert b.method == method
    rest = errors[450:].tolist()
    if method == "kswin":  # KSWIN's window sampler is random; only check it keeps running
        assert all(isinstance(b.update_error(e), bool) for e in rest)
        return
    assert [a.update_error(e) for e in rest] == [b.update_error(e) for e in rest]


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError):
        ConceptDriftDetector(method="magic")


def test_cusum_reference_tracks_in_control_data():
    cusum = CusumDriftMethod(warmup=100)
    for e in np.random.default_rng(5).normal(10.0, 2.0, 5000).tolist():
        cusum.update(e)
    mean, std = cusum.reference
    assert mean == pytest.approx(10.0, abs=0.15) and std == pytest.approx(2.0, rel=0.05)


def test_upward_only_cusum_ignores_improvements_but_catches_worsening():
    rng = np.random.default_rng(6)
    up = ConceptDriftDetector(window_size=100, direction="up")
    both = ConceptDriftDetector(window_size=100)
    improving = np.concatenate([np.abs(rng.normal(0, 2, 300)), np.abs(rng.normal(0, 0.5, 3000))])
    assert _first_alarm(up, improving) is None
    assert _first_alarm(both, improving) is not None
    worse = np.abs(rng.normal(0, 1.5, 500))  # errors grow again (relative to the new reference)
    assert _first_alarm(up, worse) is not None


@pytest.mark.parametrize("seed", range(4))
def test_upward_cusum_on_error_magnitudes_has_no_false_alarms(seed):
    errors = np.abs(np.random.default_rng(20_000 + seed).normal(0, 1, 50_000))
    assert _first_alarm(ConceptDriftDetector(window_size=100, direction="up"), errors) is None
