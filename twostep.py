"""Behavioural analysis of the two-step task (Daw et al. 2011): stay probabilities, the
hybrid model-based / model-free learner fitted by maximum likelihood, and the strongest
model-free learner of a grid.

After trial t − 1 the agent either repeats its first-stage choice (stay) or switches. Split by
that trial's transition (common: the state reached is the one the action commonly leads to,
action 0 → A, action 1 → B) and outcome (rewarded or not), a model-free learner stays more
after reward whatever the transition (main effect of reward), while a learner that uses the
transition model stays after common-rewarded and rare-unrewarded trials and switches after
rare-rewarded and common-unrewarded ones (the reward × transition interaction).

A positive interaction alone does not prove model-based behaviour: a model-free learner shows
one too when the good state persists (Akam, Costa & Dayan 2015). Two stronger tests are here:
the weight w of the model-based values in the hybrid learner of Daw et al. fitted to the
behaviour (fit_hybrid), and the largest interaction over a grid of model-free TD learners
(model_free_grid), the bound a "model-based" agent must exceed.

Trials of one episode are dependent (they share the task and the learner's values), so every
SE here resamples or sums whole episodes (stats.cluster_bootstrap; the clustered sandwich);
SEs that treat trials as independent are kept beside them only for comparison, under the
keys "se_iid" (stay probabilities) and "se_hessian" (the hybrid fit).

Works on the arrays of any policy (actions (T, B), rewards (T, B), obs (T, B, 2) with
obs = one_hot(state)), e.g. from belief.run_policy or metarl.rollout. Beliefs and reference
policies live in belief.py; this file only describes behaviour.
"""
import itertools
from dataclasses import dataclass

import numpy as np
from numba import njit

import belief
from boundary import atomic_write, check_float
from envs import check_history, make_config
from stats import cluster_bootstrap

CELLS = ("common rewarded", "rare rewarded", "common unrewarded", "rare unrewarded")
COEFFICIENTS = ("intercept", "reward", "transition", "reward x transition")
# coefficient × cell signs of the saturated ±1 design, cells in CELLS order (x_r, x_c):
# (+1, +1), (+1, −1), (−1, +1), (−1, −1)
COEFFICIENT_SIGNS = np.array([[1, 1, 1, 1], [1, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1]])
N_BOOT = 1000          # bootstrap replicates: MC error of an SE ≈ SE / √(2·1000) ≈ 2 %
BOOTSTRAP_SEED = 0     # the stream stay_analysis resamples from when no rng is given


# ----------------------------------------------------------------------------- stay analysis

def stay_trials(actions, rewards, obs):
    """Every trial t ≥ 1 of every episode as flat arrays (N,), N = (T − 1)·B:
    stay = 1[a_t = a_{t−1}], and the previous trial's reward and transition coded ±1
    (x_r = +1 if rewarded, x_c = +1 if common)."""
    state = obs[..., 1].astype(np.int64)  # (T, B) 0 = A, 1 = B
    stay = (actions[1:] == actions[:-1]).astype(np.float64)
    x_r = np.where(rewards[:-1] > 0.5, 1.0, -1.0)
    x_c = np.where(state[:-1] == actions[:-1], 1.0, -1.0)
    return stay.ravel(), x_r.ravel(), x_c.ravel()


def check_two_step_history(actions, rewards, obs):
    """Episodes as the two-step env makes them (envs.check_history at their own length, ≥ 2
    trials: a stay needs a previous trial), or ValueError; as int64 / float64 arrays."""
    actions = np.asarray(actions)
    T = actions.shape[0] if actions.ndim == 2 else 0
    if T < 2:
        raise ValueError(f"two-step episodes need shape (T, B) with T >= 2 trials, got "
                         f"{actions.shape}")
    return check_history(make_config("two-step", horizon=T), actions, rewards, obs)


def stay_counts(actions, rewards, obs):
    """Per-episode counts of the four CELLS, (B, 2, 4): [e, 0] trials n, [e, 1] stays k.

    The sufficient statistics of every stay-probability estimate, and the unit the cluster
    bootstrap resamples (an episode), so that 1000 replicates cost a sum over (B, 8) each."""
    actions, rewards, obs = check_two_step_history(actions, rewards, obs)
    T, B = actions.shape
    stay, x_r, x_c = (v.reshape(T - 1, B) for v in stay_trials(actions, rewards, obs))
    cell = 2 * (x_r < 0) + (x_c < 0)  # (T − 1, B) index into CELLS
    in_cell = cell[..., None] == np.arange(len(CELLS))  # (T − 1, B, 4)
    return np.stack([in_cell.sum(axis=0), (in_cell * stay[..., None]).sum(axis=0)],
                    axis=1).astype(np.float64)


def stay_statistics(counts):
    """From per-episode counts (..., B, 2, 4), summed over episodes, (..., 9):
    the four stay probabilities p = k / n, the interaction [p(CR) − p(CU)] − [p(RR) − p(RU)],
    and the four saturated logistic coefficients β = COEFFICIENT_SIGNS · logit(p) / 4."""
    n, k = np.moveaxis(counts.sum(axis=-3), -2, 0)  # (..., 4) each
    with np.errstate(divide="ignore", invalid="ignore"):  # an empty or pure cell: nan / ±inf
        p = k / n
        beta = (np.log(p) - np.log1p(-p)) @ COEFFICIENT_SIGNS.T / 4
    interaction = p[..., 0] - p[..., 2] - (p[..., 1] - p[..., 3])
    return np.concatenate([p, interaction[..., None], beta], axis=-1)


def stay_analysis(actions, rewards, obs, rng=None, n_boot=N_BOOT):
    """Stay probabilities in the four CELLS and the reward × transition interaction, with SEs
    that resample whole episodes.

    Cells: p = k / n. Difference of differences: [p(CR) − p(CU)] − [p(RR) − p(RU)].
    Logistic regression: logit P(stay) = β_0 + β_r x_r + β_c x_c + β_rc x_r x_c, saturated
    (four cells, four β), so β̂ = COEFFICIENT_SIGNS · logit(p̂) / 4, and its MLE exists only
    if no cell stays always or never (otherwise the coefficients are nan).

    "se": the cluster-bootstrap SE over episodes (stats.cluster_bootstrap, n_boot replicates
    drawn from rng; default: a fixed stream, so the same data give the same SEs).
    "se_iid": treats all trials as independent (binomial √(p(1 − p)/n) for the cells, the four
    cells as independent for the interaction, the Fisher information for β); too small when
    an episode's trials are correlated, kept only for comparison.

    Returns {"stay": cell → {"p", "se", "se_iid", "n"},
             "interaction": {"mean", "se", "se_iid"},
             "logit": COEFFICIENTS → {"mean", "se", "se_iid"}, "episodes", "n_boot"}."""
    rng = np.random.default_rng(BOOTSTRAP_SEED) if rng is None else rng
    counts = stay_counts(actions, rewards, obs)  # (B, 2, 4)
    boot = cluster_bootstrap(stay_statistics, counts, rng, n_boot)
    se = boot["se"]  # (9,) cells, interaction, coefficients
    n, k = counts.sum(axis=0)
    stays = {}
    for j, cell in enumerate(CELLS):
        p = k[j] / n[j] if n[j] else np.nan
        stays[cell] = {"p": p, "se": se[j], "se_iid": np.sqrt(p * (1 - p) / n[j]), "n": int(n[j])}
    p = {cell: stays[cell]["p"] for cell in CELLS}
    interaction = (p["common rewarded"] - p["common unrewarded"]
                   - (p["rare rewarded"] - p["rare unrewarded"]))
    interaction_se_iid = np.sqrt(sum(stays[cell]["se_iid"] ** 2 for cell in CELLS))
    if all(0 < stays[cell]["p"] < 1 for cell in CELLS):
        stay, x_r, x_c = stay_trials(actions, rewards, obs)
        X = np.stack([np.ones_like(x_r), x_r, x_c, x_r * x_c], axis=1)  # (N, 4)
        beta, beta_se_iid = logistic_regression(X, stay)
        beta_se = se[5:]
    else:
        beta = beta_se = beta_se_iid = np.full(4, np.nan)
    return {"stay": stays,
            "interaction": {"mean": interaction, "se": se[4], "se_iid": interaction_se_iid},
            "logit": {name: {"mean": beta[j], "se": beta_se[j], "se_iid": beta_se_iid[j]}
                      for j, name in enumerate(COEFFICIENTS)},
            "episodes": counts.shape[0], "n_boot": n_boot}


def logistic_regression(X, y, max_iter=50, tol=1e-10):
    """Maximum-likelihood β of P(y = 1 | x) = σ(x·β) by Newton's method (IRLS), and SE(β).

        p = σ(Xβ),   I(β) = Xᵀ diag(p(1 − p)) X   (the Fisher information, = −Hessian)
        β ← β + I(β)⁻¹ Xᵀ(y − p)
        SE = √diag I(β̂)⁻¹
    The SE treats the rows as independent. Raises ValueError if Newton does not converge
    within max_iter steps: with separated data the likelihood keeps rising as |β| → ∞."""
    beta = np.zeros(X.shape[1])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-X @ beta))
        info = (X * (p * (1 - p))[:, None]).T @ X  # (D, D)
        try:
            step = np.linalg.solve(info, X.T @ (y - p))
        except np.linalg.LinAlgError:  # the weights p(1 − p) underflow as |β| runs off
            break
        beta = beta + step
        if np.abs(step).max() < tol:
            # info is I(β) one step (< tol) before β̂: I(β̂) to that accuracy
            return beta, np.sqrt(np.diag(np.linalg.inv(info)))
    raise ValueError(f"logistic regression did not converge within {max_iter} Newton steps "
                     "(separated data? the MLE is then at infinity)")


def stay_probability_plot(analyses, path):
    """Bar plot of the four stay probabilities (± cluster-bootstrap SE) of each policy, one
    panel per policy, in the classic layout: rewarded / unrewarded on the x axis, common and
    rare bars side by side. analyses: name → stay_analysis(...). Written atomically as a PNG."""
    import matplotlib
    matplotlib.use("Agg")  # no display needed; imported here so the analysis needs no matplotlib
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(analyses), figsize=(3.6 * len(analyses) + 1.6, 3.8),
                             sharey=True, squeeze=False, layout="constrained")
    width = 0.38
    for ax, (name, analysis) in zip(axes[0], analyses.items()):
        for k, (transition, colour) in enumerate((("common", "C0"), ("rare", "C3"))):
            cells = [f"{transition} {outcome}" for outcome in ("rewarded", "unrewarded")]
            ax.bar(np.arange(2) + (k - 0.5) * width, [analysis["stay"][c]["p"] for c in cells],
                   width, yerr=[analysis["stay"][c]["se"] for c in cells], capsize=3,
                   color=colour, label=transition)
        i = analysis["interaction"]
        ax.set_xticks(range(2), ["rewarded", "unrewarded"])
        ax.set(xlabel="previous outcome", ylim=(0, 1.05),
               title=f"{name}\nreward × transition {i['mean']:+.3f} ± {i['se']:.3f}")
    axes[0, 0].set_ylabel("P(stay with previous choice)")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), title="previous transition",
               loc="outside right center")
    fig.suptitle("Two-step task: stay probabilities (± SE over episodes)")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


# ----------------------------------------------------------------------------- hybrid learner
#
# Daw et al. (2011), adapted to one choice per trial. After each trial the model-free values
# learn by the SARSA(λ) of belief.model_free_q (Q the first-stage values Q_MF, V(s) the value
# of second-stage state s); the model-based values look V up through the known transitions:
#
#     Q_MB(a) = Σ_s P(s | a) V(s),          Q_net = w·Q_MB + (1 − w)·Q_MF,
#     P(a_t = a) = softmax_a(β·Q_net(a) + p·1[a = a_{t−1}])          (p: perseveration)
#
# With two actions that is P(a_t = 1) = σ(d_t), d_t = β·ΔQ_net + p·k_t, Δ = value of action 1
# minus action 0, k_t = 2a_{t−1} − 1 (0 on the first trial), and ΔQ_MB = (2c − 1)(V(B) − V(A))
# with c = P(common). The log-likelihood of an episode is Σ_t log σ(±d_t), + for a_t = 1.

HYBRID_PARAMS = ("alpha", "lam", "w", "beta", "p")
BETA_MAX = 100.0   # cap on β: rewards are 0/1, so β = 100 makes any value gap over 0.1 a
                   # 1-in-20,000 choice; deterministic policies drive the fit to it
AT_BOUND = 7.0     # |θ| beyond this (σ(7) = 0.9991) puts a bounded parameter at its bound
RESTART_THETA = 3.0  # where a parameter stalled at a bound restarts from (σ(3) = 0.95)
BOUND_RESTARTS = 2
GTOL = 1e-8        # BFGS stops when |∇| of the mean log-likelihood per trial is below this
MAX_ITER = 500
HESSIAN_STEP = 1e-4  # central differences of the analytic gradient: error ~ 1e-8 relative


@njit(cache=True)
def sarsa_update(Q, V, dQ, dV, a, s, r, alpha, lam):
    """One trial of belief.model_free_q's SARSA(λ) for one episode, in place, with its
    forward-mode derivative. Q (2,) first-stage values, V (2,) second-stage values,
    dQ (2, 2) = [∂Q/∂α, ∂Q/∂λ], dV (2,) = ∂V/∂α (V does not depend on λ):

        δ1 = V(s) − Q(a),   δ2 = r − V(s)
        Q(a) ← Q(a) + α(δ1 + λδ2),   V(s) ← V(s) + αδ2
        ∂Q(a)/∂α ← ∂Q(a)/∂α + δ1 + λδ2 + α((1 − λ) ∂V(s)/∂α − ∂Q(a)/∂α)
        ∂Q(a)/∂λ ← ∂Q(a)/∂λ + αδ2 − α ∂Q(a)/∂λ
        ∂V(s)/∂α ← ∂V(s)/∂α + δ2 − α ∂V(s)/∂α"""
    delta1 = V[s] - Q[a]
    delta2 = r - V[s]
    dQ[0, a] += delta1 + lam * delta2 + alpha * ((1.0 - lam) * dV[s] - dQ[0, a])
    dQ[1, a] += alpha * (delta2 - dQ[1, a])
    dV[s] += delta2 - alpha * dV[s]
    Q[a] += alpha * (delta1 + lam * delta2)
    V[s] += alpha * delta2


@njit(cache=True)
def hybrid_logit(Q, V, dQ, dV, prev, common, w, beta, p, grad):
    """d = logit P(a_t = 1) = β·ΔQ_net + p·k of one episode, and ∂d/∂(α, λ, w, β, p) into
    grad (5,):

        ∂d/∂α = β(w(2c − 1)(∂V(B)/∂α − ∂V(A)/∂α) + (1 − w) ∂ΔQ/∂α),
        ∂d/∂λ = β(1 − w) ∂ΔQ/∂λ,   ∂d/∂w = β(ΔQ_MB − ΔQ_MF),   ∂d/∂β = ΔQ_net,   ∂d/∂p = k.
    prev = a_{t−1}, or −1 on the first trial."""
    dq_mf = Q[1] - Q[0]
    dq_mb = (2.0 * common - 1.0) * (V[1] - V[0])
    dq_net = w * dq_mb + (1.0 - w) * dq_mf
    k = 0.0 if prev < 0 else 2.0 * prev - 1.0
    grad[0] = beta * (w * (2.0 * common - 1.0) * (dV[1] - dV[0])
                      + (1.0 - w) * (dQ[0, 1] - dQ[0, 0]))
    grad[1] = beta * (1.0 - w) * (dQ[1, 1] - dQ[1, 0])
    grad[2] = beta * (dq_mb - dq_mf)
    grad[3] = dq_net
    grad[4] = k
    return beta * dq_net + p * k


@njit(cache=True)
def hybrid_kernel(actions, states, rewards, common, alpha, lam, w, beta, p):
    """Per-episode log-likelihood ll (B,) and score ∂ll/∂(α, λ, w, β, p) (B, 5) of the hybrid
    learner on T trials, and d (B,), the logit of P(a = 1) on the trial after them:

        ll = Σ_t log σ(s_t d_t),  s_t = ±1 for a_t = 1 / 0;    ∂ll/∂d_t = a_t − σ(d_t).
    Inputs are trusted: hybrid_log_likelihood checks them before this indexes with them."""
    T, B = actions.shape
    ll = np.zeros(B)
    score = np.zeros((B, 5))
    d_next = np.empty(B)
    Q, V, dV, grad = np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(5)
    dQ = np.zeros((2, 2))
    for e in range(B):
        Q[:] = 0.0
        V[:] = 0.0
        dQ[:] = 0.0
        dV[:] = 0.0
        prev = -1
        for t in range(T):
            a = actions[t, e]
            d = hybrid_logit(Q, V, dQ, dV, prev, common, w, beta, p, grad)
            z = d if a == 1 else -d
            ll[e] -= np.log1p(np.exp(-z)) if z > 0 else np.log1p(np.exp(z)) - z  # log σ(z)
            p_1 = 1.0 / (1.0 + np.exp(-d)) if d > 0 else np.exp(d) / (1.0 + np.exp(d))
            for j in range(5):
                score[e, j] += (a - p_1) * grad[j]
            sarsa_update(Q, V, dQ, dV, a, states[t, e], rewards[t, e], alpha, lam)
            prev = a
        d_next[e] = hybrid_logit(Q, V, dQ, dV, prev, common, w, beta, p, grad)
    return ll, score, d_next


def hybrid_log_likelihood(params, cfg, actions, rewards, obs):
    """Per-episode log-likelihood (B,) of the hybrid learner with params (dict of
    HYBRID_PARAMS) on episodes of the two-step task cfg (its common_prob is c), its score
    (B, 5) with respect to (α, λ, w, β, p), and the logit of P(a = 1) on the trial after the
    last one (B,). Raises ValueError on data the env cannot produce (envs.check_history) or
    parameters out of range, before the kernel indexes with them."""
    if cfg.name != "two-step":
        raise ValueError(f"the hybrid learner is a model of the two-step task, not {cfg.name}")
    if sorted(params) != sorted(HYBRID_PARAMS):
        raise ValueError(f"the hybrid learner's parameters are {', '.join(HYBRID_PARAMS)}, got "
                         f"{', '.join(params)}")
    actions, rewards, obs = check_history(cfg, actions, rewards, obs)
    alpha, lam, w = (check_float(name, params[name], 0.0, 1.0) for name in ("alpha", "lam", "w"))
    beta = check_float("beta", params["beta"], 0.0, np.inf)
    p = check_float("p", params["p"], -np.inf, np.inf)
    states = np.ascontiguousarray(obs[..., 1], dtype=np.int64)  # one-hot: 0 = A, 1 = B
    return hybrid_kernel(actions, states, rewards, cfg.common_prob, alpha, lam, w, beta, p)


def hybrid_policy(cfg, params):
    """choose(past, rng) for belief.run_policy: the hybrid learner with params, sampling
    a_t ~ σ(d_t) from the same kernel that the likelihood uses, run over the history (O(T²)
    per episode, cheap at these horizons, and the learner stays a pure function of the past)."""
    def choose(past, rng):
        *_, d = hybrid_log_likelihood(params, cfg, past["actions"], past["rewards"], past["obs"])
        return (rng.random(d.size) < sigmoid(d)).astype(np.int64)
    return choose


def sigmoid(x):
    """σ(x) = 1 / (1 + e^{−x}) written as (1 + tanh(x/2)) / 2, which cannot overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


# --- maximum likelihood: unconstrained θ, BFGS, clustered sandwich SEs ---

def params_from_theta(theta, beta_max=BETA_MAX):
    """(α, λ, w, β, p) from θ ∈ ℝ⁵: α, λ, w = σ(θ_0..2), β = β_max·σ(θ_3), p = θ_4; and the
    Jacobian diagonal ∂(α, λ, w, β, p)/∂θ = (α(1 − α), λ(1 − λ), w(1 − w), β(1 − β/β_max), 1)."""
    s = sigmoid(theta[:4])
    scale = np.array([1.0, 1.0, 1.0, beta_max])
    natural = np.append(scale * s, theta[4])
    return dict(zip(HYBRID_PARAMS, natural)), np.append(scale * s * (1.0 - s), 1.0)


def theta_from_params(params, beta_max=BETA_MAX):
    """The inverse of params_from_theta."""
    s = np.array([params["alpha"], params["lam"], params["w"], params["beta"] / beta_max])
    return np.append(np.log(s) - np.log1p(-s), params["p"])


def hybrid_objective(theta, data, beta_max=BETA_MAX):
    """Total log-likelihood L(θ) and per-episode scores g_e = ∂ll_e/∂θ (B, 5) (chain rule
    through params_from_theta's Jacobian). data = (cfg, actions, rewards, obs)."""
    params, jacobian = params_from_theta(theta, beta_max)
    ll, score, _ = hybrid_log_likelihood(params, *data)
    return ll.sum(), score * jacobian


@dataclass(frozen=True)
class HybridFit:
    """Maximum-likelihood fit of the hybrid learner (fit_hybrid); dicts keyed by HYBRID_PARAMS."""

    estimates: dict        # the MLE of α, λ, w, β, p
    se: dict               # clustered sandwich SE (episodes as clusters); nan at a bound
    se_hessian: dict       # √diag(−H)⁻¹: right only if the hybrid model were the true one
    log_likelihood: float  # at the estimates, summed over all trials
    episodes: int
    trials: int            # T·B, including each episode's first trial (a coin flip, log ½)
    at_bound: tuple        # parameters at a bound of their range (β: (0, beta_max])
    beta_max: float
    converged: bool        # |∇| of the mean log-likelihood per trial < GTOL
    iterations: int


def fit_hybrid(cfg, actions, rewards, obs, start=None, beta_max=BETA_MAX):
    """Fit the hybrid learner to behaviour on the two-step task cfg by maximum likelihood;
    return a HybridFit.

    θ = (logit α, logit λ, logit w, logit(β/β_max), p) is maximised without constraints by
    BFGS with the analytic gradient (bfgs_from_bounds), from `start` (default α = λ = w = ½,
    β = 5, p = 0). A parameter whose |θ| ends beyond AT_BOUND sits at a bound of its range
    (e.g. β → β_max for a deterministic policy, w → 0 for a model-free one); it is reported in
    at_bound and left out of the Hessian and the sandwich (it stays free in BFGS), and its SE
    is nan. The perseveration p has no bound: with choices the model predicts exactly (an
    agent that always stays) its SE can come out small although p and β trade off; check
    converged and the estimates, not only the SEs.

    SEs: the agent is not a hybrid learner and an episode's trials are dependent, so the
    covariance of θ̂ is the sandwich clustered by episode (White 1982; cluster-robust),

        Cov(θ̂) = H⁻¹ M H⁻¹,   M = B/(B − 1) Σ_e g_e g_eᵀ,   H = ∇²L(θ̂)

    over the free parameters, with H by central differences of the analytic gradient, mapped
    to (α, λ, w, β, p) by the delta method (Jacobian of params_from_theta)."""
    check_two_step_history(actions, rewards, obs)   # ≥ 2 trials: else nothing identifies θ
    data = (cfg, actions, rewards, obs)
    start = {"alpha": 0.5, "lam": 0.5, "w": 0.5, "beta": 5.0, "p": 0.0} if start is None else start
    if sorted(start) != sorted(HYBRID_PARAMS) or not (
            all(0 < start[k] < 1 for k in ("alpha", "lam", "w")) and 0 < start["beta"] < beta_max):
        raise ValueError(f"the start needs α, λ, w in (0, 1) and β in (0, {beta_max}), got {start}")
    B = np.shape(actions)[1]
    if B < 2:
        raise ValueError(f"clustered SEs need at least 2 episodes, got {B}")
    n_trials = np.size(actions)

    def mean_negative(theta):  # scaled per trial so that GTOL does not depend on T·B
        L, g = hybrid_objective(theta, data, beta_max)
        return -L / n_trials, -g.sum(axis=0) / n_trials

    theta0 = theta_from_params(start, beta_max)
    theta, iterations, converged = bfgs_from_bounds(mean_negative, theta0)
    free = ~near_bound(theta)
    L, g = hybrid_objective(theta, data, beta_max)
    H = hessian_from_gradient(lambda th: hybrid_objective(th, data, beta_max)[1].sum(axis=0),
                              theta, free)
    M = B / (B - 1) * g[:, free].T @ g[:, free]
    try:
        H_inv = np.linalg.inv(H)
    except np.linalg.LinAlgError:   # a flat direction of the likelihood: no SE, not a crash
        H_inv = np.full_like(H, np.nan)
    params, jacobian = params_from_theta(theta, beta_max)
    with np.errstate(invalid="ignore"):  # −H not positive definite: nan SE, not a crash
        se_free = jacobian[free] * np.sqrt(np.diag(H_inv @ M @ H_inv))
        se_hessian_free = jacobian[free] * np.sqrt(np.diag(-H_inv))
    se, se_hessian = np.full(5, np.nan), np.full(5, np.nan)
    se[free], se_hessian[free] = se_free, se_hessian_free
    return HybridFit(estimates={k: float(v) for k, v in params.items()},
                     se=dict(zip(HYBRID_PARAMS, se.tolist())),
                     se_hessian=dict(zip(HYBRID_PARAMS, se_hessian.tolist())),
                     log_likelihood=float(L), episodes=B, trials=n_trials,
                     at_bound=tuple(n for n, f in zip(HYBRID_PARAMS, free) if not f),
                     beta_max=beta_max, converged=converged, iterations=iterations)


def near_bound(theta):
    """Which of θ's coordinates put a bounded parameter at its bound: |θ_j| > AT_BOUND for
    α, λ, w, β; never for the unbounded p."""
    return np.append(np.abs(theta[:4]) > AT_BOUND, False)


def bfgs_from_bounds(f, theta, restarts=BOUND_RESTARTS):
    """bfgs, then again from θ with every coordinate found near a bound moved back to
    ±RESTART_THETA, kept if it lowers f (up to `restarts` times). The logistic link is flat
    near the bounds (σ' → 0), so an iterate that overshoots there can stall where the gradient
    has vanished although the likelihood peaks inside; a true bound is found again.
    Returns (θ, total iterations, converged)."""
    theta, iterations, converged = bfgs(f, theta)
    for _ in range(restarts):
        stuck = near_bound(theta)
        if not stuck.any():
            break
        retry = np.where(stuck, np.sign(theta) * RESTART_THETA, theta)
        theta_new, more, converged_new = bfgs(f, retry)
        iterations += more
        if f(theta_new)[0] >= f(theta)[0]:
            break
        theta, converged = theta_new, converged_new
    return theta, iterations, converged


def hessian_from_gradient(gradient, theta, free, h=HESSIAN_STEP):
    """∇² of a function over the coordinates `free`, by central differences of its analytic
    gradient: H[:, j] = (∇(θ + h e_j) − ∇(θ − h e_j)) / 2h, symmetrised."""
    idx = np.flatnonzero(free)
    H = np.empty((idx.size, idx.size))
    for col, j in enumerate(idx):
        step = np.zeros_like(theta)
        step[j] = h
        H[:, col] = (gradient(theta + step)[idx] - gradient(theta - step)[idx]) / (2 * h)
    return 0.5 * (H + H.T)


def bfgs(f, x, gtol=GTOL, max_iter=MAX_ITER):
    """Minimise f(x) → (value, gradient) by BFGS (Nocedal & Wright 2006, alg. 6.1):

        step = −M ∇f,   x' = x + η·step with η halved from 1 until Armijo's
        f(x') ≤ f(x) + 10⁻⁴ η ∇fᵀstep holds,   s = x' − x,  y = ∇f(x') − ∇f(x),
        M ← (I − ρ s yᵀ) M (I − ρ y sᵀ) + ρ s sᵀ,   ρ = 1 / yᵀs   (skipped unless yᵀs > 0)

    M starts as the identity and is rescaled by yᵀs / yᵀy after the first step (N&W 6.20).
    Returns (x, iterations, converged), converged when max |∇f| < gtol; the loop also ends
    if no step length down to 2⁻⁴⁰ decreases f (x is then optimal to rounding, or stuck)."""
    value, grad = f(x)
    M = np.eye(x.size)
    for iteration in range(max_iter):
        if np.abs(grad).max() < gtol:
            return x, iteration, True
        step = -M @ grad
        if grad @ step >= 0:  # M lost positive definiteness to rounding: restart it
            M, step = np.eye(x.size), -grad
        eta = 1.0
        while True:
            x_new = x + eta * step
            value_new, grad_new = f(x_new)
            if value_new <= value + 1e-4 * eta * (grad @ step):
                break
            eta *= 0.5
            if eta < 2.0 ** -40:
                return x, iteration, bool(np.abs(grad).max() < gtol)
        s, y = x_new - x, grad_new - grad
        if y @ s > 0:
            if iteration == 0:
                M = (y @ s) / (y @ y) * M
            rho = 1.0 / (y @ s)
            I = np.eye(x.size)
            M = (I - rho * np.outer(s, y)) @ M @ (I - rho * np.outer(y, s)) + rho * np.outer(s, s)
        x, value, grad = x_new, value_new, grad_new
    return x, max_iter, bool(np.abs(grad).max() < gtol)


# ----------------------------------------------------------------------------- model-free bound

# The TD learner of belief.two_step_policies over learning rates, inverse temperatures and
# eligibility traces spanning slow to fast, noisy to near-greedy, TD(0) to Monte Carlo. The
# interaction peaks at moderate α and β (near α = 0.2, β = 3, λ = 1 in the default task), so
# the grid is dense there: a coarse β grid {2, 5, 10} misses the peak by ~0.05. 168 settings
# of 1000 episodes take ~9 s on one core.
MF_GRID = {"alpha": (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9),
           "beta": (1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 20.0), "lam": (0.0, 0.5, 1.0)}


def model_free_grid(cfg, episodes, seed, rng, grid=MF_GRID, n_boot=N_BOOT):
    """The reward × transition interaction of every model-free TD learner of the grid, each
    run on the same `episodes` episodes (belief.run_policy with `seed`: common random
    numbers), with its cluster-bootstrap SE (resampled from rng).

    The largest interaction is what a purely model-free learner can show through the
    selection confound alone, the bound a "model-based" agent must exceed. Being the maximum
    of many noisy estimates, it is biased upwards, which makes exceeding it harder, not easier.

    Returns {"settings": [{"alpha", "beta", "lam", "interaction", "se", "se_iid"}, ...],
             "largest": the setting with the largest interaction}."""
    settings = []
    for alpha, beta, lam in itertools.product(grid["alpha"], grid["beta"], grid["lam"]):
        choose = belief.two_step_policies(cfg, alpha, beta, lam)["model_free_td"]
        data = belief.run_policy(cfg, choose, episodes, seed)
        i = stay_analysis(*data, rng, n_boot)["interaction"]
        settings.append({"alpha": alpha, "beta": beta, "lam": lam, "interaction": float(i["mean"]),
                         "se": float(i["se"]), "se_iid": float(i["se_iid"])})
    return {"settings": settings, "largest": max(settings, key=lambda s: s["interaction"])}
