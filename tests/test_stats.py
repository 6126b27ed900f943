"""Tests for stats.py: each name states the property.

Simulation checks use fixed seeds and state their tolerance in standard errors (SE)."""
import math

import numpy as np
import pytest

import stats

MC_TOLERANCE_SE = 3  # a simulated frequency vs its exact value: 3 binomial SE


# ----------------------------------------------------------------------------- Student's t

@pytest.mark.parametrize("p, df, expected", [
    (0.975, 1, 12.706205), (0.975, 2, 4.302653), (0.95, 2, 2.919986), (0.975, 4, 2.776445),
    (0.975, 30, 2.042272)])
def test_t_quantile_matches_tabulated_values(p, df, expected):
    assert stats.t_quantile(p, df) == pytest.approx(expected, abs=5e-7)  # tables round to 1e-6


def test_t_quantile_tends_to_the_normal_quantile_as_df_grows():
    z = 1.959963984540054  # Φ⁻¹(0.975)
    # Cornish–Fisher: t_ν = z + (z³ + z)/4ν + (5z⁵ + 16z³ + 3z)/96ν² + O(ν⁻³)
    nu = 1e4
    expansion = z + (z ** 3 + z) / (4 * nu) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * nu ** 2)
    assert stats.t_quantile(0.975, nu) == pytest.approx(expansion, abs=1e-10)
    assert stats.t_quantile(0.975, 1e6) == pytest.approx(z, abs=5e-6)


def test_t_cdf_matches_closed_forms_for_one_and_two_degrees_of_freedom():
    for t in (-30.0, -2.0, -0.3, 0.0, 0.7, 4.0, 100.0):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-14)
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-14)


def test_t_cdf_is_symmetric_and_increasing_and_t_quantile_inverts_it():
    t = np.linspace(-8, 8, 161)
    for df in (1, 2.5, 7, 60):
        F = np.array([stats.t_cdf(x, df) for x in t])
        np.testing.assert_allclose(F + F[::-1], 1.0, atol=1e-14)
        assert np.all(np.diff(F) > 0)
        for p in (0.001, 0.2, 0.5, 0.9, 0.999):
            assert stats.t_cdf(stats.t_quantile(p, df), df) == pytest.approx(p, abs=1e-12)


def test_t_functions_refuse_fewer_than_one_degree_of_freedom_and_p_outside_0_1():
    for bad_df in (0, 0.5, -1, float("nan")):
        with pytest.raises(ValueError, match="df ≥ 1"):
            stats.t_quantile(0.975, bad_df)
        with pytest.raises(ValueError, match="df ≥ 1"):
            stats.t_cdf(1.0, bad_df)
    for bad_p in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="0 < p < 1"):
            stats.t_quantile(bad_p, 3)


# ----------------------------------------------------------------------------- intervals

def test_mean_ci_and_one_sided_limits_use_the_t_quantile_of_n_minus_1_df():
    x = np.array([1.0, 2.0, 4.0])
    se = x.std(ddof=1) / math.sqrt(3)
    ci = stats.mean_ci(x, level=0.95)
    assert (ci["n"], ci["df"], ci["stderr"]) == (3, 2, pytest.approx(se))
    t_two, t_one = 4.302653, 2.919986  # t_{0.975, 2}, t_{0.95, 2}
    assert ci["lower"] == pytest.approx(x.mean() - t_two * se, abs=1e-5)
    assert ci["upper"] == pytest.approx(x.mean() + t_two * se, abs=1e-5)
    assert stats.lower_confidence_limit(x, 0.95) == pytest.approx(x.mean() - t_one * se, abs=1e-5)
    assert stats.upper_confidence_limit(x, 0.95) == pytest.approx(x.mean() + t_one * se, abs=1e-5)


def test_intervals_are_undefined_not_a_crash_for_a_single_value():
    ci = stats.mean_ci([3.0])
    assert ci["mean"] == 3.0 and ci["n"] == 1
    assert all(ci[k] is None for k in ("stderr", "df", "t", "lower", "upper"))
    assert stats.lower_confidence_limit([3.0]) is None
    assert stats.upper_confidence_limit([3.0]) is None
    d = stats.paired_difference([3.0], [1.0])
    assert d["mean"] == 2.0 and d["greater"] is None and d["lower_one_sided"] is None


def test_t_interval_covers_the_mean_at_its_level_and_two_se_does_not():
    # 20,000 samples of n = 3 normal values: the 95 % t interval (t_{0.975, 2} = 4.30) covers
    # μ 95 % of the time; "mean ± 2 SE" covers it P(|T_2| < 2) = 2/√6 ≈ 81.6 % of the time.
    rng = np.random.default_rng(0)
    mu, trials, n = 1.5, 20_000, 3
    x = rng.normal(mu, 2.0, size=(trials, n))
    mean, se = x.mean(axis=1), x.std(axis=1, ddof=1) / math.sqrt(n)
    ci = stats.mean_ci(x[0])
    assert (ci["lower"], ci["upper"]) == pytest.approx((mean[0] - ci["t"] * se[0],
                                                        mean[0] + ci["t"] * se[0]))
    tolerance = MC_TOLERANCE_SE * math.sqrt(0.95 * 0.05 / trials)
    t_covers = np.mean(np.abs(mean - mu) <= ci["t"] * se)
    two_se_covers = np.mean(np.abs(mean - mu) <= 2 * se)
    assert abs(t_covers - 0.95) < tolerance
    assert abs(two_se_covers - 2 / math.sqrt(6)) < MC_TOLERANCE_SE * math.sqrt(0.82 * 0.18 / trials)
    assert two_se_covers < 0.95 - tolerance
    one_sided_covers = np.mean(mu > mean - stats.t_quantile(0.95, n - 1) * se)
    assert abs(one_sided_covers - 0.95) < tolerance


def test_paired_test_detects_a_shift_that_an_unpaired_test_on_the_same_data_misses():
    # Each seed has its own large offset shared by both conditions (sd 5); condition a adds
    # 0.5 (noise sd 0.2). Paired differences cancel the offset; an unpaired test cannot.
    rng = np.random.default_rng(1)
    offset = rng.normal(0.0, 5.0, size=10)
    a = offset + 0.5 + rng.normal(0.0, 0.2, size=10)
    b = offset + rng.normal(0.0, 0.2, size=10)
    paired = stats.paired_difference(a, b, level=0.95)
    unpaired = stats.welch_difference(a, b, level=0.95)
    assert paired["mean"] == pytest.approx(unpaired["mean"])
    assert paired["greater"] and paired["p_greater"] < 0.001
    assert not unpaired["greater"] and unpaired["p_greater"] > 0.3
    assert paired["lower_one_sided"] == pytest.approx(
        paired["mean"] - stats.t_quantile(0.95, 9) * paired["stderr"])


def test_one_sided_paired_test_has_its_stated_false_positive_rate():
    # With no true difference, "greater" at level 0.95 must fire 5 % of the time.
    rng = np.random.default_rng(2)
    trials = 2000
    fired = [stats.paired_difference(*rng.normal(size=(2, 4)), level=0.95)["greater"]
             for _ in range(trials)]
    assert abs(np.mean(fired) - 0.05) < MC_TOLERANCE_SE * math.sqrt(0.05 * 0.95 / trials)


def test_welch_degrees_of_freedom_follow_satterthwaite():
    a, b = np.array([1.0, 2.0, 4.0, 7.0]), np.array([0.0, 0.5, 0.7])
    va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 3
    w = stats.welch_difference(a, b)
    assert w["stderr"] == pytest.approx(math.sqrt(va + vb))
    assert w["df"] == pytest.approx((va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2))


# ----------------------------------------------------------------------------- bootstrap

def random_effect_data(rng, clusters, size, sd_cluster, sd_trial):
    """y (C, m) = u_c + ε, u_c ~ N(0, sd_cluster²), ε ~ N(0, sd_trial²)."""
    return (rng.normal(0.0, sd_cluster, size=(clusters, 1))
            + rng.normal(0.0, sd_trial, size=(clusters, size)))


def grand_mean(x):
    return x.mean(axis=(1, 2))


def test_cluster_bootstrap_se_is_the_design_effect_times_the_iid_se_under_an_episode_effect():
    # ρ = 1 / (1 + 4) = 0.2, m = 50 trials: design effect 1 + (m − 1)ρ = 10.8, so the SE of
    # the mean is √10.8 ≈ 3.3 times the SE that treats the 15,000 trials as independent.
    rng = np.random.default_rng(3)
    C, m = 300, 50
    y = random_effect_data(rng, C, m, sd_cluster=1.0, sd_trial=2.0)
    boot = stats.cluster_bootstrap(grand_mean, y, np.random.default_rng(4), n_boot=2000)
    iid_se = y.std(ddof=1) / math.sqrt(y.size)
    # against the design effect: the between-cluster variance is estimated from C = 300
    # clusters (relative SE of an SE ≈ 1/√(2C) = 4 %), so a 15 % tolerance is ~3.5 SE
    assert boot["se"] == pytest.approx(math.sqrt(1 + (m - 1) * 0.2) * iid_se, rel=0.15)
    # against the exact bootstrap SE of a mean of equal clusters, sd₀(cluster means)/√C: only
    # the Monte-Carlo error of 2000 replicates remains (1/√4000 ≈ 1.6 % in theory; 2.3 % sd
    # over 20 generator seeds measured), so 8 % is ≥ 3.5 SE
    assert boot["se"] == pytest.approx(y.mean(axis=1).std() / math.sqrt(C), rel=0.08)
    assert boot["estimate"] == pytest.approx(y.mean())


def test_cluster_bootstrap_agrees_with_the_iid_se_when_trials_are_independent():
    rng = np.random.default_rng(5)
    y = random_effect_data(rng, 300, 50, sd_cluster=0.0, sd_trial=2.0)
    boot = stats.cluster_bootstrap(grand_mean, y, np.random.default_rng(6), n_boot=2000)
    # the cluster means' sd estimates the iid one with relative SE 1/√(2C) ≈ 4 %: 3 SE = 12 %
    assert boot["se"] == pytest.approx(y.std(ddof=1) / math.sqrt(y.size), rel=0.12)


def test_cluster_bootstrap_by_episode_index_equals_the_array_form_and_handles_ragged_episodes():
    rng = np.random.default_rng(7)
    y = random_effect_data(rng, 40, 6, sd_cluster=1.0, sd_trial=1.0)
    by_array = stats.cluster_bootstrap(grand_mean, y, np.random.default_rng(8), n_boot=200)
    by_index = stats.cluster_bootstrap(lambda j: y[j].mean(axis=(1, 2)), np.arange(40),
                                       np.random.default_rng(8), n_boot=200)
    np.testing.assert_array_equal(by_array["replicates"], by_index["replicates"])
    ragged = [rng.normal(size=n) for n in rng.integers(1, 9, size=40)]  # episodes of 1–8 trials

    def pooled_mean(j):  # (m, C) episode indices → (m,) mean over all resampled trials
        return np.array([np.concatenate([ragged[e] for e in row]).mean() for row in j])
    boot = stats.cluster_bootstrap(pooled_mean, np.arange(40), np.random.default_rng(9), 300)
    assert boot["estimate"] == pytest.approx(np.concatenate(ragged).mean())
    assert boot["replicates"].shape == (300,) and boot["se"] > 0


def test_cluster_bootstrap_is_reproducible_from_its_generator_and_refuses_one_cluster():
    y = random_effect_data(np.random.default_rng(10), 20, 5, 1.0, 1.0)
    first = stats.cluster_bootstrap(grand_mean, y, np.random.default_rng(11), n_boot=100)
    second = stats.cluster_bootstrap(grand_mean, y, np.random.default_rng(11), n_boot=100)
    np.testing.assert_array_equal(first["replicates"], second["replicates"])
    with pytest.raises(ValueError, match="≥ 2 clusters"):
        stats.cluster_bootstrap(grand_mean, y[:1], np.random.default_rng(0))
