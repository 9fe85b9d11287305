import pytest

from spectral_reach.lnp import log_windows, step_windows


def test_log_windows_start_at_zero_and_space_logarithmically():
    w = log_windows(10_000, per_decade=2, width=3)
    assert [x.start for x in w] == [0, 1, 3, 10, 32, 100, 316, 1000, 3162, 9997]
    assert all(x.stop - x.start == 3 for x in w)
    assert [x.index for x in w] == list(range(len(w)))


def test_windows_are_clipped_and_overlaps_measured_once():
    w = log_windows(12, per_decade=4, width=5)
    assert w[-1].stop == 12
    steps = step_windows(w)
    assert list(steps) == sorted(set(steps)) == list(range(12))
    assert steps[0] == 0 and steps[4] == 0 and steps[5] == 1  # window 1 is [1, 6)


def test_a_last_window_ends_at_the_final_step_whatever_per_decade_gives():
    """Issue 37: the demo's 600-step runs were measured up to step 319 only."""
    w = log_windows(600, per_decade=2, width=4)
    assert [(x.start, x.stop) for x in w[-2:]] == [(316, 320), (596, 600)]
    assert max(step_windows(w)) == 599 and step_windows(w)[599] == len(w) - 1
    assert [x.start for x in log_windows(1000, per_decade=1, width=1)] == [0, 1, 10, 100, 999]
    # a last window that already ends at the final step is not repeated
    assert [(x.start, x.stop) for x in log_windows(12, per_decade=4, width=5)][-1] == (10, 12)
    assert len(log_windows(101, per_decade=1, width=1)) == 4  # 0, 1, 10, 100: step 100 is the last


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(total_steps=0, per_decade=1, width=1),
        dict(total_steps=5, per_decade=0, width=1),
        dict(total_steps=5, per_decade=1, width=0),
    ],
)
def test_bad_arguments_name_the_key(kwargs):
    bad = next(k for k, v in kwargs.items() if v == 0)
    with pytest.raises(ValueError, match=bad):
        log_windows(**kwargs)
