"""Distillation: an LSTM of the agent's architecture trained to act as the exact reference does
and to carry the exact belief linearly in h: a *known* belief-state network.

Objective "distill" of metarl.Config: the agent's inputs, width and heads, trained on its own
rollouts by cross-entropy to the reference's tie-split policy (belief.reference_q:
Bayes-optimal for the bandits and Tiger, belief-greedy for two-step) plus a regression of
the exact belief features from h. It is the ladders' reference belief-state network,
and the ceiling of what the agent's LSTM can represent. The RL-only fields (γ, λ, β, c_V)
are not read. runs.train trains it with distill_update as its step.
"""
import numpy as np

import belief
from metarl import (EVAL_STREAM, Config, adam_step, backprop_through_time,
                    check_finite_statistics, clip_by_global_norm, entropy_bonus, learning_rate_at, rollout,
                    stream)

DISTILL_RECIPE = dict(objective="distill", lr=3e-3, updates=6000, dtype="float32")


def distill_recipe(env="bandit", **given):
    """The Config of env's distillation recipe (DISTILL_RECIPE), `given` fields over it."""
    return Config(**{**DISTILL_RECIPE, "env": env, **given})


BELIEF_RIDGE = 1e-4   # keeps the belief readout's normal equations well posed (h may be collinear)


def cross_entropy_loss(log_pi, pi, target):
    """L_CE = −(1/N) Σ_{t,e} Σ_a π*_t(a) log π_t(a), N = T·B, and dL_CE/dlogits = (π − π*)/N
    (d log π(a)/dlogits = onehot(a) − π, and Σ_a π*(a) = 1). π* is the tie-split policy of
    the reference's Q (belief.tie_split_policy): uniform over its best actions."""
    N = pi.shape[0] * pi.shape[1]
    return -float((target * log_pi).sum()) / N, (pi - target) / N


def belief_regression_loss(h, F, ridge=BELIEF_RIDGE):
    """L_B = min over M, m of (1/2N) Σ_{t,e} ‖h_{t+1} M + m − F̃_t‖² + (ridge/2) ‖M‖², and dL_B/dh.

    F (T, B, n_f) are the exact belief features before each action, standardised over the
    batch (F̃; a column that does not vary is left at 0); h (T, B, H) the states the policy
    acts from. The minimiser is the ridge regression M* = (h_cᵀh_c/N + ridge I)⁻¹ h_cᵀF̃_c/N
    (centred columns), m* = mean F̃ − (mean h) M*. At the minimum ∂L/∂M = ∂L/∂m = 0, so the
    total derivative through (M*, m*) is the partial one (envelope theorem):
        dL_B/dh = (h M* + m* − F̃) M*ᵀ / N.
    The readout is refitted on every batch, so it adds no parameter: a distilled checkpoint
    is one like any other. Solved in float64 whatever h's dtype."""
    T, B, H = h.shape
    N = T * B
    X, Y = h.reshape(N, H).astype(np.float64), F.reshape(N, -1).astype(np.float64)
    Y = (Y - Y.mean(axis=0)) / np.maximum(Y.std(axis=0), 1e-12)   # F̃ (mean 0 already)
    mean_X = X.mean(axis=0)
    Xc = X - mean_X
    M = np.linalg.solve(Xc.T @ Xc / N + ridge * np.eye(H), Xc.T @ Y / N)   # (H, n_f)
    residual = Xc @ M - Y                   # h M* + m* − F̃, with m* = −(mean h) M*
    loss = 0.5 * float((residual * residual).sum()) / N + 0.5 * ridge * float((M * M).sum())
    return loss, (residual @ M.T / N).reshape(T, B, H).astype(h.dtype)


def distillation_targets(cfg, tr, ref):
    """π* (T, B, A), the tie-split policy of the reference's Q at every step of tr, and the
    exact belief features F (T, B, n_f), in tr's dtype."""
    fam = belief.belief_family(cfg)
    beliefs = belief.belief_trajectory(cfg, tr.a, tr.r, tr.obs)
    q = fam.reference_q(cfg, ref, beliefs)
    target = belief.tie_split_policy(q.reshape(-1, q.shape[-1])).reshape(q.shape)
    F, _ = fam.features(cfg, beliefs)
    return target.astype(tr.pi.dtype), F


def distillation_loss_and_gradients(params, tr, target, F, belief_weight, fused=True):
    """L = L_CE + w_B L_B of a trajectory (cross_entropy_loss, belief_regression_loss) and
    dL/dθ by backprop-through-time; the value head is not trained (dL/dV = 0). Statistics:
    "policy" is L_CE, "value" is L_B, "entropy" the mean policy entropy."""
    L_CE, dlogits = cross_entropy_loss(tr.log_pi, tr.pi, target)
    L_B, dh = belief_regression_loss(tr.h[1:], F)
    ent, _ = entropy_bonus(tr.log_pi, tr.pi)
    grads = backprop_through_time(params, tr, dlogits, np.zeros(tr.a.shape, tr.pi.dtype),
                                  belief_weight * dh, fused=fused)
    return {"loss": L_CE + belief_weight * L_B, "policy": L_CE, "value": L_B,
            "entropy": ent}, grads


def distill_update(params, opt, hp, cfg, rng, lr, targets, buffers=None, fused=True):
    """One distillation update: B fresh tasks → rollout of the student's own policy →
    targets(tr) = (π* (T, B, A), F (T, B, n_f)) on its histories → BPTT of L_CE + w_B L_B →
    clip → Adam. `metarl.py distill` uses the reference's tie-split policy and the exact
    belief features (distillation_targets, its reference built once per run); the
    recent-events LSTM and the ladders' LSTMs use other targets."""
    tr = rollout(params, cfg, hp.batch, rng, out=buffers, fused=fused)
    target, F = targets(tr)
    stats, grads = distillation_loss_and_gradients(params, tr, target, F, hp.belief_weight,
                                                   fused=fused)
    stats["grad_norm"] = clip_by_global_norm(grads, hp.max_grad_norm)
    check_finite_statistics(stats)
    adam_step(params, grads, opt, lr)
    stats["return"] = float(tr.r.sum(axis=0).mean())
    return tr, stats


def training_step(hp, cfg, targets=None, fused=True):
    """metarl.train's step for objective distill: step(u, buffers, params, opt) runs
    distill_update on stream(hp.seed, u) at update u's rate. targets(tr) → (π*, F) defaults to
    the exact reference's tie-split policy and belief features (distillation_targets)."""
    if targets is None:
        ref = belief.reference(cfg)   # once per run: the bandit DP takes seconds
        targets = lambda tr: distillation_targets(cfg, tr, ref)

    def step(u, buffers, params, opt):
        return distill_update(params, opt, hp, cfg, stream(hp.seed, u), learning_rate_at(hp, u),
                              targets, buffers=buffers, fused=fused)
    return step


def agreement_with_reference(params, cfg, episodes, seed):
    """Fraction of steps of `episodes` fresh sampled episodes at which the most likely action
    of π is one of the reference's best actions (belief.agreement_rate: ties agree)."""
    tr = rollout(params, cfg, episodes, stream(seed, EVAL_STREAM))
    q = belief.reference_q(cfg, tr.a, tr.r, tr.obs)
    return belief.agreement_rate(q.reshape(-1, q.shape[-1]), tr.pi.reshape(-1, q.shape[-1]))

