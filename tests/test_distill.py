"""Distillation (objective "distill"): its loss terms and whole update against central finite
differences in float64, and a short run that learns to act as the exact reference."""
import numpy as np
import pytest

import belief
import distill
import envs
import metarl
import runs
from test_metarl import assert_gradients_close, generic_rollout, numeric_gradient


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_pi = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return log_pi, np.exp(log_pi)


def test_cross_entropy_matches_finite_differences_and_is_least_at_the_target():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 3, 3))
    target = belief.tie_split_policy(rng.integers(0, 2, (12, 3)).astype(float)).reshape(4, 3, 3)
    _, d = distill.cross_entropy_loss(*log_softmax(logits), target)
    assert_gradients_close(d, numeric_gradient(
        lambda: distill.cross_entropy_loss(*log_softmax(logits), target)[0], logits))
    # at π = π* (where π* has no zeros) the gradient vanishes: the loss is least there
    soft = np.full((2, 2, 3), 1 / 3)
    assert np.abs(distill.cross_entropy_loss(np.log(soft), soft, soft)[1]).max() < 1e-15


def test_belief_regression_gradient_is_the_total_derivative_through_the_refitted_readout():
    """L_B(h) minimises over the readout; its finite differences refit the readout at every
    perturbed h, so they check the envelope-theorem gradient, not a partial derivative."""
    rng = np.random.default_rng(1)
    h = rng.standard_normal((5, 4, 3))
    F = np.concatenate([h[..., :1] ** 2, rng.standard_normal((5, 4, 1))], axis=-1)
    _, dh = distill.belief_regression_loss(h, F)
    assert_gradients_close(dh, numeric_gradient(lambda: distill.belief_regression_loss(h, F)[0], h))


def test_belief_regression_is_zero_when_the_features_are_linear_in_h():
    rng = np.random.default_rng(2)
    h = rng.standard_normal((20, 10, 4))
    F = h @ rng.standard_normal((4, 2)) + 3.0
    loss, dh = distill.belief_regression_loss(h, F, ridge=0.0)
    assert loss < 1e-20 and np.abs(dh).max() < 1e-12


@pytest.mark.parametrize("env_name", list(envs.FAMILIES))
def test_whole_distillation_gradient_matches_finite_differences(env_name):
    """L_CE + w_B L_B over T = 5 steps, B = 3, for every parameter. Actions are replayed, so
    the targets (functions of the history alone) are held fixed, as the update treats them."""
    cfg, params, tr = generic_rollout(env_name)
    target, F = distill.distillation_targets(cfg, tr, belief.reference(cfg))
    _, grads = distill.distillation_loss_and_gradients(params, tr, target, F, 0.7)

    def loss():
        replay = metarl.rollout(params, cfg, 3, np.random.default_rng(5), actions=tr.a)
        return distill.distillation_loss_and_gradients(params, replay, target, F, 0.7)[0]["loss"]

    for name in metarl.PARAM_NAMES:
        assert_gradients_close(grads[name], numeric_gradient(loss, params[name]))
    assert not grads["w_V"].any() and not grads["b_V"].any()   # the value head is not trained


@pytest.mark.slow
def test_a_short_distillation_learns_the_reference_actions_and_checkpoints_like_any_run(tmp_path):
    hp = distill.distill_recipe("dependent-bandit", hidden=16, batch=32, updates=300,
                               log_every=300)
    cfg = metarl.env_config(hp)
    before = distill.agreement_with_reference(metarl.initial_params(hp, cfg), cfg, 200, seed=1)
    runs.train(hp, str(tmp_path / "d.npz"), log=lambda line: None)
    ckpt = runs.load_checkpoint(str(tmp_path / "d.npz"))
    assert ckpt["hp"].objective == "distill"
    after = distill.agreement_with_reference(ckpt["params"], cfg, 200, seed=1)
    assert after > 0.9 > before + 0.2, (before, after)
    result = runs.evaluate(ckpt["params"], cfg, 500, seed=1)
    assert result["pseudo_regret"] < 8.0   # random play: 25 on this family, Bayes 1.22
