"""Tests for repro.stats: the log-log fit against numpy's least squares."""
import numpy as np
import pytest

from repro.core.stats import loglog_slope


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
