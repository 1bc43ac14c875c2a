"""Tests for repro.core.stats: the log-log fit against numpy's least squares, paired differences
against scipy's standard error."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from repro.core.stats import loglog_slope, paired_difference, two_standard_errors


def test_loglog_slope_recovers_a_power_law_and_its_noise():
    widths = [64, 128, 256, 512, 1024]
    slope, stderr = loglog_slope(widths, [3.0 * w ** -0.5 for w in widths])
    assert slope == pytest.approx(-0.5) and stderr == pytest.approx(0.0, abs=1e-12)
    # a reference least-squares fit (numpy) on noisy data gives the same slope and standard error
    rng = np.random.default_rng(0)
    values = np.array(widths, float) ** 0.3 * np.exp(0.1 * rng.standard_normal(5))
    slope, stderr = loglog_slope(widths, values)
    x = np.log(widths)
    fit = np.polyfit(x, np.log(values), 1)
    residual = np.log(values) - np.polyval(fit, x)
    ref_slope, ref_se = fit[0], np.sqrt(residual @ residual / 3 / ((x - x.mean()) ** 2).sum())
    assert slope == pytest.approx(ref_slope) and stderr == pytest.approx(ref_se)


def test_loglog_slope_rejects_bad_input():
    with pytest.raises(ValueError, match="positive and finite"):
        loglog_slope([0, 128, 256], [1.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="at least 3 x values"):
        loglog_slope([64, 128], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 3 x values"):
        loglog_slope([64, 128, 256], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive and finite"):
        loglog_slope([64, 128, 256], [1.0, 0.0, 2.0])


def test_paired_difference_is_the_mean_difference_and_two_scipy_standard_errors():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 7), rng.normal(0.0, 1.0, 7)
    mean, two_se = paired_difference(a, b)
    assert mean == pytest.approx((a - b).mean())
    assert two_se == pytest.approx(2 * stats.sem(a - b)) and two_se == two_standard_errors(a - b)
    # pairing matters: a shared per-seed offset cancels in the difference
    offset = rng.normal(0.0, 100.0, 7)
    assert paired_difference(a + offset, b + offset) == pytest.approx((mean, two_se))


def test_paired_difference_pairs_series_by_seed_and_rejects_bad_input():
    a = pd.Series([1.0, 2.0, 4.0], index=[0, 1, 2])
    assert paired_difference(a, a - 1.0) == pytest.approx((1.0, 0.0))
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference(a, pd.Series([1.0, 2.0, 4.0], index=[0, 1, 3]))
    with pytest.raises(ValueError, match="one value per seed"):
        paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 values"):
        two_standard_errors([1.0])
