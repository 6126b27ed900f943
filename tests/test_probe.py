"""Tests for probe.py: each test names the property it checks."""
import numpy as np
import pytest

import belief
import probe
import ridge
from conftest import assert_png_shows_the_figure, plot_axes, run_script

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def linear_episodes(rng, T=20, B=200, D=5, M=2, sigma=1.0):
    """Y = X W + c + σ ε with correlated, shifted, scaled features; rows flattened time-major."""
    A = rng.normal(size=(D, D)) + 2 * np.eye(D)           # feature mixing: Cov(X) = Aᵀ A
    X, groups = ridge.flatten_episodes(rng.normal(size=(T, B, D)) @ A + rng.normal(0, 5, D))
    W = rng.normal(size=(D, M))
    c = rng.normal(size=M)
    Y = X @ W + c + sigma * rng.normal(size=(T * B, M))
    return X, Y, groups, W, c, A


def test_flatten_is_time_major_and_unflatten_inverts_it():
    A = np.arange(3 * 4 * 2).reshape(3, 4, 2)  # (T, B, F)
    X, groups = ridge.flatten_episodes(A)
    assert X.shape == (12, 2)
    np.testing.assert_array_equal(X[1 * 4 + 2], A[1, 2])  # row t*B + b
    np.testing.assert_array_equal(groups, [0, 1, 2, 3] * 3)
    np.testing.assert_array_equal(ridge.unflatten_episodes(X, 4), A)


def test_ridge_recovers_weights_in_original_units():
    rng = np.random.default_rng(0)
    sigma = 0.5
    X, Y, groups, W, c, _ = linear_episodes(rng, sigma=sigma)
    W_hat, c_hat = ridge.ridge_coefficients(ridge.ridge_fit(X, Y, lam=1e-10))
    # Tolerance: 5 OLS standard errors, SE_j = σ sqrt([(Xcᵀ Xc)⁻¹]_jj); λ = 1e-10 adds no bias
    # worth counting. |z| > 5 has probability 6e-7 per coefficient.
    Xc = X - X.mean(0)
    se = sigma * np.sqrt(np.diag(np.linalg.inv(Xc.T @ Xc)))
    assert np.all(np.abs(W_hat - W) < 5 * se[:, None])
    x_bar = X.mean(0)  # intercept SE: σ sqrt(1/N + x̄ᵀ (Xcᵀ Xc)⁻¹ x̄)
    se_c = sigma * np.sqrt(1 / len(X) + x_bar @ np.linalg.solve(Xc.T @ Xc, x_bar))
    assert np.all(np.abs(c_hat - c) < 5 * se_c)


def test_held_out_r2_matches_theoretical_signal_fraction():
    rng = np.random.default_rng(1)
    sigma = 2.0
    X, Y, groups, W, c, A = linear_episodes(rng, sigma=sigma)
    cv = ridge.cross_validated_r2(X, Y, groups, rng=rng)
    signal = np.einsum("dm,de,em->m", W, A.T @ A, W)  # Var(X W)_m = W_mᵀ Cov(X) W_m
    r2_theory = signal / (signal + sigma**2)
    # SSE/N and SST/N each have relative sampling error ≈ sqrt(2/N) = 0.022 (N = 4000), so
    # SE(R²) ≲ (1 - R²) · 2 · 0.022 ≤ 0.02 here; overfitting adds (1 - R²) D / N_train ≈ 1e-3.
    assert np.all(r2_theory > 0.5) and np.all(r2_theory < 0.95)  # a non-trivial regime
    np.testing.assert_allclose(cv.r2, r2_theory, atol=0.03)
    np.testing.assert_allclose(cv.r2_fold.mean(0), r2_theory, atol=0.03)
    assert cv.Yhat.shape == Y.shape and np.all(cv.r2_sd > 0)


def test_ridge_matches_lstsq_on_augmented_system():
    rng = np.random.default_rng(2)
    N, D, M, lam = 50, 6, 3, 0.3
    X = rng.normal(size=(N, D)) * rng.uniform(0.5, 3, D) + 1.0
    X[:, 4] = 7.0  # a constant column: must give W = 0, not NaN
    Y = rng.normal(size=(N, M))
    fit = ridge.ridge_fit(X, Y, lam)
    sd = X.std(0)
    sd[4] = 1.0
    Xs = (X - X.mean(0)) / sd
    # min ||Yc - Xs W||² + N λ ||W||²  ==  least squares on [Xs; sqrt(N λ) I] W ≈ [Yc; 0]
    A = np.vstack([Xs, np.sqrt(N * lam) * np.eye(D)])
    b = np.vstack([Y - Y.mean(0), np.zeros((D, M))])
    W_ref = np.linalg.lstsq(A, b, rcond=None)[0]
    np.testing.assert_allclose(fit.W, W_ref, atol=1e-10, rtol=0)
    assert np.all(fit.W[4] == 0)
    np.testing.assert_allclose(ridge.ridge_predict(fit, X), Xs @ W_ref + Y.mean(0), atol=1e-10)


def test_chosen_lambda_grows_with_noise():
    rng = np.random.default_rng(3)
    T, B, D = 4, 15, 30  # 60 rows for 30 features: the regime where shrinkage matters
    X, groups = ridge.flatten_episodes(rng.normal(size=(T, B, D)))
    Y_clean = X @ rng.normal(0, 1 / np.sqrt(D), (D, 1))  # Var(X w) ≈ 1
    eps = rng.normal(size=Y_clean.shape)
    median_lam = [np.median(ridge.cross_validated_r2(X, Y_clean + sigma * eps, groups,
                                                     rng=np.random.default_rng(0)).lam)
                  for sigma in (0.1, 1.0, 10.0)]
    assert np.all(np.diff(median_lam) >= 0)
    assert median_lam[-1] > median_lam[0]


def test_episode_never_on_both_sides_of_a_split():
    rng = np.random.default_rng(4)
    groups = rng.permutation(np.repeat(rng.choice(1000, 23, replace=False), rng.integers(1, 9, 23)))
    fold = ridge.episode_folds(groups, 5, rng)
    for f in range(5):
        assert np.intersect1d(groups[fold == f], groups[fold != f]).size == 0
        assert np.any(fold == f)
    episodes_per_fold = [np.unique(groups[fold == f]).size for f in range(5)]
    assert max(episodes_per_fold) - min(episodes_per_fold) <= 1


def test_shuffle_moves_whole_episodes_and_no_episode_keeps_its_own():
    rng = np.random.default_rng(5)
    T, B = 6, 10
    Y, groups = ridge.flatten_episodes(rng.normal(size=(T, B, 2)))
    Y_shuffled = ridge.unflatten_episodes(ridge.shuffle_targets_across_episodes(Y, groups, rng), B)
    Y = ridge.unflatten_episodes(Y, B)  # (T, B, 2)
    for b in range(B):
        donors = [d for d in range(B) if np.array_equal(Y_shuffled[:, b], Y[:, d])]
        assert len(donors) == 1 and donors[0] != b


def test_shuffled_targets_give_r2_near_zero():
    rng = np.random.default_rng(6)
    T, B, D = 10, 400, 4
    z = rng.normal(size=(B, 1))  # per-episode latent: the structure the control must destroy
    X, groups = ridge.flatten_episodes(z * rng.normal(size=D) + 0.3 * rng.normal(size=(T, B, D)))
    Y, _ = ridge.flatten_episodes(z + 0.1 * rng.normal(size=(T, B, 1)))
    r2 = ridge.cross_validated_r2(X, Y, groups, rng=rng).r2
    Y_shuffled = ridge.shuffle_targets_across_episodes(Y, groups, rng)
    r2_shuffled = ridge.cross_validated_r2(X, Y_shuffled, groups, rng=rng).r2
    assert r2[0] > 0.9
    # Y is constant within an episode, so there are only B = 400 independent samples; chance
    # fits of D = 4 weights cost about D / B = 0.01 of R², well inside 0.05.
    assert abs(r2_shuffled[0]) < 0.05


def test_tie_split_policy_and_policy_kl_on_hand_cases():
    q = np.array([[1.0, 1.0, 0.0],
                  [0.0, 2.0, 2.0 - 1e-12],  # a tie within atol
                  [3.0, 1.0, 2.0]])
    p_ref = belief.tie_split_policy(q, atol=1e-9)
    np.testing.assert_allclose(p_ref, [[0.5, 0.5, 0], [0, 0.5, 0.5], [1, 0, 0]])
    p_agent = np.array([[0.25, 0.25, 0.5],
                        [0.0, 0.5, 0.5],
                        [0.5, 0.5, 0.0]])
    # row 0: 2 · 0.5 log(0.5 / 0.25) = log 2; row 1: 0; row 2: log(1 / 0.5) = log 2
    assert belief.policy_kl(p_ref, p_agent) == pytest.approx(2 * np.log(2) / 3, abs=1e-12)
    assert belief.policy_kl(p_ref, p_ref) == 0.0
    # zero agent probability on an optimal action: finite, = log(1 / eps)
    assert belief.policy_kl([[1.0, 0.0]], [[0.0, 1.0]], eps=1e-8) == pytest.approx(np.log(1e8))


def test_agreement_rate_counts_argmax_among_tied_best_actions():
    q = np.array([[1.0, 1.0, 0.0],
                  [0.0, 1.0, 2.0],
                  [5.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0]])
    p_agent = np.array([[0.1, 0.6, 0.3],   # action 1: tied best → agrees
                        [0.2, 0.5, 0.3],   # action 1: not best
                        [0.9, 0.05, 0.05],  # action 0: best
                        [0.2, 0.2, 0.6]])  # all tied → agrees
    assert belief.agreement_rate(q, p_agent) == 0.75


def test_principal_components_find_the_dominant_direction():
    rng = np.random.default_rng(7)
    direction = np.array([3.0, 4.0, 0.0]) / 5
    X = rng.normal(size=(500, 1)) * 10 * direction + rng.normal(size=(500, 3))
    Z, V, ratio = probe.principal_components(X, 2)
    assert abs(V[0] @ direction) > 0.99
    assert ratio[0] > 0.9 and ratio[0] > ratio[1]
    np.testing.assert_allclose(Z, (X - X.mean(0)) @ V.T, atol=1e-10)


def test_encode_drops_constant_units_and_decode_scores_each_feature():
    rng = np.random.default_rng(8)
    T, B = 10, 50
    b, groups = ridge.flatten_episodes(rng.normal(size=(T, B, 2)))
    h = np.tanh(b @ rng.normal(size=(2, 4)))  # 4 units driven by the belief
    h = np.hstack([h, np.full((len(h), 1), 0.3)])  # plus a dead unit
    enc = ridge.encode(b, h, groups, rng=rng)
    np.testing.assert_array_equal(enc.keep, [True] * 4 + [False])
    assert enc.r2_mean == pytest.approx(enc.cv.r2.mean()) and enc.r2_mean > 0.8
    dec = ridge.decode(np.arctanh(h[:, :4]), b, groups, rng=rng)
    assert dec.r2.shape == (2,) and np.all(dec.r2 > 0.99)  # b is exactly linear in arctanh(h)


@pytest.mark.parametrize("X, Y, groups, kwargs, match", [
    (np.zeros((10, 2)), np.zeros((9, 1)), np.arange(10), {}, r"X has shape \(10, 2\) but Y has shape \(9, 1\)"),
    (np.full((10, 2), np.nan), np.zeros((10, 1)), np.arange(10), {}, "X contains 20 NaN/inf"),
    (np.zeros((10, 2)), np.array([[np.inf]] * 10), np.arange(10), {}, "Y contains 10 NaN/inf"),
    (np.zeros((10, 2)), np.zeros(10), np.arange(10), {}, r"Y must be 2-D"),
    (np.zeros((10, 2)), np.zeros((10, 1)), np.arange(9), {}, r"groups has shape \(9,\) but X has 10 rows"),
    (np.zeros((10, 2)), np.zeros((10, 1)), np.arange(10) % 3, {"lambdas": [1.0]}, "k=5 outer folds need at least 5 episodes, got 3"),
    (np.zeros((10, 2)), np.zeros((10, 1)), np.arange(10) % 6, {}, "k=5 outer × 5 inner folds need at least 7 episodes, got 6"),
    (np.zeros((10, 2)), np.zeros((10, 1)), np.arange(10), {"k": 1}, "k must be an integer >= 2, got 1"),
    (np.zeros((10, 2)), np.zeros((10, 1)), np.arange(10), {"lambdas": [0.0, 1.0]}, "λ must be finite and > 0"),
])
def test_bad_inputs_raise_clear_errors(X, Y, groups, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ridge.cross_validated_r2(X, Y, groups, rng=np.random.default_rng(0), **kwargs)


def test_shuffle_rejects_unequal_episode_lengths():
    with pytest.raises(ValueError, match="equal episode lengths, got lengths 1..2"):
        ridge.shuffle_targets_across_episodes(np.zeros((3, 1)), np.array([0, 0, 1]),
                                              np.random.default_rng(0))


def test_plots_draw_the_data_they_are_given(tmp_path, drawn):
    """Each figure is a PNG of its figure's size with a drawing in it, and its axes hold
    labels, a title and exactly the data handed in."""
    rng = np.random.default_rng(9)
    b = rng.normal(size=100)
    b_hat = b + 0.1 * rng.normal(size=100)
    paths = [tmp_path / name for name in ("scatter.png", "bars.png", "pca.png", "trajectory.png")]
    probe.decoded_scatter_plot(b, b_hat, paths[0])
    probe.r2_bar_plot(["mean", "var"], {"trained": np.array([0.9, 0.7]), "shuffled": np.zeros(2)},
                      {"trained": np.array([0.02, 0.05]), "shuffled": np.full(2, 0.01)}, paths[1])
    probe.pca_plot(rng.normal(size=(100, 6)), b, paths[2])
    probe.belief_trajectory_plot(b[:20], b_hat[:20], paths[3])
    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp left
    assert len(drawn) == len(paths)
    for path, drawing in zip(paths, drawn):
        assert_png_shows_the_figure(path, drawing)
        for ax in plot_axes(drawing.figure):
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title(), path.name
    scatter, bars, pca, trajectory = (plot_axes(d.figure) for d in drawn)
    # the (exact, decoded) points, the identity line, and their R² in the title
    np.testing.assert_array_equal(scatter[0].collections[0].get_offsets(), np.c_[b, b_hat])
    assert len(scatter[0].lines) == 1
    assert f"R² = {ridge.r2_score(b, b_hat):.3f}" in scatter[0].get_title()
    # 1 − R² per condition and feature, in dict order: trained (0.1, 0.3), shuffled (1, 1)
    np.testing.assert_allclose([bar.get_height() for bar in bars[0].patches], [0.1, 0.3, 1, 1])
    # the 100 states' points, coloured by the belief; and one colour bar beside them
    assert len(pca[0].collections[0].get_offsets()) == 100
    np.testing.assert_array_equal(pca[0].collections[0].get_array(), b)
    assert len(drawn[2].figure.axes) == 2
    # one episode: exact, then decoded, over its 20 steps
    np.testing.assert_array_equal(trajectory[0].lines[0].get_ydata(), b[:20])
    np.testing.assert_array_equal(trajectory[0].lines[1].get_ydata(), b_hat[:20])


# ----------------------------------------------------------------------------- on a real agent
# probe.py's command line runs in this process (conftest.cli); one smoke test runs the script.
import json
from pathlib import Path

import distill
import ladders
import metarl
import runs



@pytest.fixture(scope="module")
def small_agent(tmp_path_factory):
    """A 2-arm bandit agent trained for a few seconds (T = 20): real, if imperfect, data."""
    path = tmp_path_factory.mktemp("agent") / "bandit.npz"
    hp = metarl.Config(env="bandit", horizon=20, hidden=16, batch=64, updates=150, lr=3e-3,
                       log_every=150, save_every=150, seed=1)
    runs.train(hp, str(path), log=lambda line: None)
    return path


@pytest.mark.slow
def test_probe_cli_json_has_the_documented_keys_and_sane_values(cli, small_agent, tmp_path):
    done = cli("probe.py", small_agent, "--episodes", "200", "--seed", "0", "--json", "--plot",
               tmp_path)
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)
    for key in ("decode", "decode_mean_r2", "encode_r2", "controls", "policy_kl", "agreement"):
        assert key in s
    assert set(s["controls"]) == {"untrained", "memoryless", "shuffled"}
    assert set(s["decode"]) == {"mean_0", "mean_1", "sd_0", "sd_1", "count_0", "count_1"}
    # real data: the posterior means are decodable from even this briefly trained state, and
    # the shuffled control is at chance for them (the means have no time trend to exploit;
    # ±0.05 is several fold-spreads of R² over 200 episodes × 20 steps)
    for f in ("mean_0", "mean_1"):
        assert s["decode"][f] > 0.5
        assert abs(s["controls_by_feature"]["shuffled"][f]) < 0.05
    assert s["policy_kl"] >= 0 and 0 <= s["agreement"] <= 1
    # the belief-state tests beyond decoding (issue: keys of the JSON), trained and untrained
    for direction in ("agent_to_bayes", "bayes_to_agent"):
        for measure in ("state_dissimilarity", "output_kl"):
            for network in ("trained", "untrained"):
                assert np.isfinite(s["simulation"][direction][measure][network]["linear"])
                assert np.isfinite(s["simulation"][direction][measure][network]["mlp"])
    for network in ("trained", "untrained"):
        assert set(s["minimality"]["partial_r2"][network]) >= {"reward_t-1", "reward_t-2",
                                                               "switches"}
        assert 0 <= s["interchange"][network]["interchange"] <= 1
        assert s["minimality"]["within_between_ratio"][network] >= 0
    for key in ("agreement_spliced", "agreement_recipient", "agreement_own"):
        assert 0 <= s["splice"][key] <= 1 and len(s["splice"]["per_lag"][key]) > 0
    assert s["splice"]["steps"] > 0
    assert s["value_loss_per_step"] >= 0 and s["value_loss_per_step_se"] > 0
    assert len(s["plots"]) == 8 and "ladders" not in s
    for png in s["plots"].values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_distilled(tmp_path_factory):
    """A Bayes-distilled LSTM of small_agent's task distribution and width (metarl.py distill)."""
    path = tmp_path_factory.mktemp("distilled") / "bandit.npz"
    hp = distill.distill_recipe("bandit", horizon=20, hidden=16, updates=300, log_every=300,
                               seed=2)
    runs.train(hp, str(path), log=lambda line: None)
    return path


@pytest.mark.slow
def test_probe_cli_measures_a_distilled_control_beside_the_agent_in_every_test(
        cli, small_agent, small_distilled):
    done = cli("probe.py", small_agent, "--episodes", "200", "--json", "--control",
               small_distilled)
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)
    assert set(s["controls"]) == {"untrained", "memoryless", "shuffled", "distilled"}
    for direction in ("agent_to_bayes", "bayes_to_agent"):
        assert set(s["simulation"][direction]["state_dissimilarity"]) == {
            "trained", "untrained", "distilled"}
    assert set(s["minimality"]["within_between_ratio"]) == {"trained", "untrained", "distilled"}
    assert set(s["interchange"]) == {"trained", "untrained", "distilled"}
    assert set(s["splice_by_network"]) == set(s["value_loss_by_network"]) == {"distilled"}
    assert s["splice_by_network"]["distilled"]["steps"] > 0
    # trained to act as the Bayes-optimal policy: it agrees with it on its own episodes
    assert s["behaviour_by_network"]["distilled"]["agreement"] > 0.9
    # and the posterior means are decodable from its state driven by the agent's inputs
    assert min(s["controls_by_feature"]["distilled"][f] for f in ("mean_0", "mean_1")) > 0.8


@pytest.mark.slow
def test_probe_cli_places_the_agent_on_every_ladder_with_an_interval(cli, small_agent):
    """probe.py CKPT --ladders --json: the agent's position on each property's ladder, its
    interval around it in the ladder's units and a verdict, from the ladders built along its
    own episodes (small sizes: 40 episodes, 20 MLP steps)."""
    done = cli("probe.py", small_agent, "--episodes", "40", "--json", "--ladders",
               "--map-steps", "20")
    assert done.returncode == 0, done.stderr
    p = json.loads(done.stdout)["ladders"]
    assert p["seeds"] == [0, 1] and p["episodes"] == 40 and len(p["values"]) == 2
    assert set(p["profile"]) == {ladder.name for ladder in ladders.LADDERS}
    placed = 0
    for ladder in ladders.LADDERS:
        prop = p["profile"][ladder.name]
        assert prop["verdict"] in ("held", "refuted", "inconclusive", "cannot decide")
        for where in prop["tests"].values():
            if "outside" not in where:
                placed += 1
                assert where["low"] <= where["position"] <= where["high"]
                assert min(ladder.grades) <= where["low"] and where["high"] <= max(ladder.grades)
    assert placed > 0
    assert "the ladders in the tanh basis" in done.stderr   # progress on stderr, JSON on stdout


def test_probe_cli_refuses_a_control_of_other_tasks(cli, tiny_checkpoint, tmp_path):
    other = tmp_path / "tiger.npz"
    runs.train(distill.distill_recipe("tiger", hidden=4, updates=1, log_every=1), str(other),
                 log=lambda line: None)
    done = cli("probe.py", tiny_checkpoint, "--control", other)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "was trained on other tasks" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--episodes", "5"], "--episodes must be"),
    (["--folds", "1"], "--folds must be an integer in [2, 100], got 1"),
    (["--ladder-seeds", "1"], "--ladder-seeds must be an integer in [2, 10], got 1"),
    (["--map-steps", "0"], "--map-steps must be an integer in [1, 100000], got 0"),
])
def test_probe_cli_bad_arguments_give_a_clear_error(cli, tiny_checkpoint, args, message):
    done = cli("probe.py", tiny_checkpoint, *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_probe_cli_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    """The smoke test of probe.py as a user runs it: a fresh interpreter."""
    bad = tmp_path / "x.npz"
    bad.write_text("not a zip")
    done = run_script("probe.py", bad)
    assert done.returncode == 2 and "not a readable checkpoint" in done.stderr
    assert "Traceback" not in done.stderr
