"""Is the agent's state a belief state? State machines compared along recorded episodes.

A linear probe shows that the exact posterior can be *read* from the LSTM's state [h, c];
an untrained LSTM fed the same inputs is nearly as readable, because a random recurrent
network already holds running sums of its inputs. Mikulik et al. (2020, "Meta-trained agents
implement Bayes-optimal agents") ask more: that the agent and the Bayes filter be the *same
machine* up to a map between their states. This module measures that, and three more things:

    1. simulation   maps φ: agent state → Bayes state and ψ: Bayes features → agent state,
                    fitted on some episodes, scored on others: does mapping, then stepping one
                    machine, land where the other machine's next state maps to (state
                    dissimilarity), and do the policies agree (output KL)?
    2. minimality   does the state hold history that the belief does not determine (partial
                    R² of such features beyond the belief; spread within groups of histories
                    with the same sufficient statistic)?
    3. splicing     give the agent another episode's state mid-episode: does it then act on the
                    spliced history, as a belief machine must, or on its own recent events?
    4. value loss   Σ_a π(a|s_t) (max_a' Q*(b_t, a') − Q*(b_t, a)) per step: where the agent
                    loses value against the Bayes-optimal policy.

Time alignment. metarl.rollout's tr.h[t], tr.c[t] is the state *before* step t; step t reads
x_t = [one_hot(a_{t−1}), r_{t−1}/scale, o_{t−1}, t/T] and acts from h_{t+1}. So the agent state
that chooses a_t is s_t := [h_{t+1}, c_{t+1}], and it corresponds to the exact belief b_t
(having seen the events of steps < t), row t of belief.belief_features. Both machines then
advance on the same event e_t = (a_t, r_t, o_t): the agent by one lstm_step reading x_{t+1},
the Bayes filter by its update. A Machine's `states[t]` is always the state that chooses a_t.

Everything task-specific (the Bayes state's coordinates, its step, its features, the
Bayes-optimal action values, the history features the belief does not determine, the splice
control) sits in one section, "Family pieces", one record per task family.

Layout: Machine and its builders; maps (ridge, one-hidden-layer MLP); the four analyses;
family pieces; figures.
"""
from dataclasses import dataclass, replace
from functools import partial
from types import SimpleNamespace
from typing import Callable

import numpy as np

import belief
import envs
import kernels
import metarl
import ridge
from boundary import check_int, check_real_array, check_shape, new_figure, save_png

FOLDS = 5              # outer K-fold over episodes, as probe.FOLDS
INNER_FOLDS = 3        # inner folds choosing ridge λ (3, not 5: the Gram matrix is the cost)
MAP_LAMBDAS = np.logspace(-4, 4, 9)   # the maps' ridge grid: ridge.LAMBDAS a decade apart, as
                       # each column's λ is chosen on its own (one prediction per λ and column)
MIN_SD = 1e-3          # coordinates whose one-step change (or value) has a smaller sd are
                       # dropped: dead or saturated LSTM units (|h| ≤ 1, so absolute scale)
CONTROL_WINDOW = 3     # events the splice control remembers (control_run): after 3 steps it
                       # carries nothing of a donor, while 3 events already move a belief a lot
TIE_TOL = belief.TIE_TOL   # Q gaps this small are DP rounding, not a preference


# ==========================================================================================
# Machines: a batched state machine run along recorded episodes
# ==========================================================================================
@dataclass
class Machine:
    """A state machine along B recorded episodes of T steps.

    states[t] (B, D) is the state that chooses a_t. step(S, t) is the state after reading the
    recorded event of step t from any states S (B, D), for t < T − 1, so that
    step(states[t], t) = states[t + 1]; it must accept states that the machine never visits
    (mapped ones). policy(S, t) → π (B, A). features(S, t) → (B, F), optional: a richer,
    nonlinear coordinate set used when this machine is the *source* of a map."""

    name: str
    states: np.ndarray                    # (T, B, D)
    step: Callable
    policy: Callable
    features: Callable = None

    def inputs(self):
        """What a map from this machine reads: features(states[t], t) or the states, (T, B, F)."""
        if self.features is None:
            return self.states
        return np.stack([self.features(self.states[t], t) for t in range(len(self.states))])

    def policies(self, S=None):
        """π at states S (T, B, D) (default: its own), (T, B, A)."""
        S = self.states if S is None else S
        return np.stack([self.policy(S[t], t) for t in range(len(S))])


def agent_machine(params, tr, name="agent"):
    """The LSTM as a Machine: states [h, c] (T, B, 2H), s_t = [h_{t+1}, c_{t+1}];
    step(s, t) = lstm_step(x_{t+1}, h, c) on the recorded input x_{t+1} (which encodes event t);
    policy(s, t) = softmax(h W_pi + b_pi) on the h part.

    The states are recomputed in float64 from the recorded inputs tr.x, so any parameters (the
    trained ones, or the untrained initial weights) are driven by the same input histories,
    and step reproduces states exactly."""
    x = np.ascontiguousarray(check_real_array("the recorded inputs x", tr.x, (None, None, None)))
    P = check_lstm_params(params, x.shape[2])                             # kernels index them
    H = P["U"].shape[0]
    T, B = x.shape[:2]
    states = np.empty((T, B, 2 * H))                                      # (T, B, 2H)
    h, c = np.zeros((B, H)), np.zeros((B, H))
    for t in range(T):
        h, c, _ = kernels.lstm_step(x[t], h, c, P["W"], P["U"], P["b"])
        states[t] = np.concatenate([h, c], axis=1)

    def step(S, t):
        check_shape("a state of the agent machine", S, (B, 2 * H))
        h, c = np.ascontiguousarray(S[:, :H]), np.ascontiguousarray(S[:, H:])
        h_new, c_new, _ = kernels.lstm_step(x[t + 1], h, c, P["W"], P["U"], P["b"])
        return np.concatenate([h_new, c_new], axis=1)

    def policy(S, t):
        return kernels.policy_head(np.ascontiguousarray(S[:, :H]), P["W_pi"], P["b_pi"])[1]

    return Machine(name=name, states=states, step=step, policy=policy)


def check_lstm_params(params, n_in):
    """params as float64 arrays if they are an LSTM's for n_in inputs (metarl.param_shapes,
    H and A read off U and W_pi), all finite; else ValueError naming the array. A predictive
    head (metarl.PREDICT_NAMES) is accepted and left out: no analysis reads it."""
    if (not isinstance(params, dict)
            or set(params) - set(metarl.PREDICT_NAMES) != set(metarl.PARAM_NAMES)
            or np.ndim(params["U"]) != 2 or np.ndim(params["W_pi"]) != 2):
        raise ValueError(f"params must be a dict of the arrays {', '.join(metarl.PARAM_NAMES)}")
    shapes = metarl.param_shapes(n_in, np.shape(params["U"])[0], np.shape(params["W_pi"])[1])
    return {k: check_real_array(f"params[{k!r}]", params[k], shape) for k, shape in shapes.items()}


def bayes_machine(cfg, tr, ref, name="Bayes"):
    """The exact Bayes filter as a Machine, from the family pieces of cfg's task family.

    states: the family's exact coordinates of belief b_t (T, B, D) along tr's events (a, r,
    obs); step: the family's update on continuous states with the recorded event t; policy:
    the tie-split Bayes-optimal policy at the nearest exact belief state (two-step:
    belief-greedy on the continuous belief); features: the family's richer features.
    ref = reference(cfg), the exact Bayes-optimal reference, built once by the caller."""
    fam = family(cfg)
    a, r, obs = np.asarray(tr.a), np.asarray(tr.r, dtype=np.float64), np.asarray(tr.obs, np.float64)
    states = exact_coordinates(cfg, a, r, obs)[:-1]                      # (T, B, D)
    return Machine(
        name=name, states=states,
        step=lambda S, t: fam.step(cfg, S, a[t], r[t], obs[t]),
        policy=lambda S, t: belief.tie_split_policy(fam.q(cfg, ref, S, t), atol=TIE_TOL),
        features=lambda S, t: fam.features(cfg, S, t))


# ==========================================================================================
# Maps between machines: ridge (ridge.py) and a one-hidden-layer MLP, cross-fitted
# ==========================================================================================
def episode_folds(B, k, rng):
    """Fold (B,) of each episode, whole episodes dealt at random (ridge.episode_folds). Pass
    the same folds to every analysis of one set of episodes (trained and untrained alike)."""
    return ridge.episode_folds(np.arange(B), k, rng)


def cross_fitted(X, Y, fold, kind, rng, shuffled=False, **mlp_options):
    """Held-out predictions Ŷ (T, B, M) of Y (T, B, M) from X (T, B, F): for each fold f, a map
    fitted on the episodes of the other folds predicts the episodes of fold f.

    kind "linear": ridge, one λ per target column chosen by inner CV (fit_ridge_per_column);
    kind "mlp": that linear map plus one hidden tanh layer fitted to what it leaves, in the
    units the map is scored in (fit_mlp, score_scale of the training episodes' Y).
    shuffled: the control in which the map is fitted to targets shuffled across episodes
    (ridge.shuffle_targets_across_episodes), so it can learn only what all episodes share."""
    if kind not in ("linear", "mlp"):
        raise ValueError(f"map kind must be 'linear' or 'mlp', got {kind!r}")
    T, B = X.shape[:2]
    Xr, groups = ridge.flatten_episodes(X)                     # rows n = t·B + e
    Yr = ridge.flatten_episodes(Y)[0]
    Y_fit = ridge.shuffle_targets_across_episodes(Yr, groups, rng) if shuffled else Yr
    episode_fold = np.asarray(fold)
    row_fold = episode_fold[groups]
    Yhat = np.empty_like(Yr, dtype=np.float64)                 # (T·B, M)
    for f in np.unique(row_fold):
        test, train = row_fold == f, row_fold != f
        linear = fit_ridge_per_column(Xr[train], Y_fit[train], groups[train], rng)
        predict = partial(ridge.ridge_predict, linear) if kind == "linear" else fit_mlp(
            Xr[train], Y_fit[train], groups[train], rng, linear,
            score_scale(Y[:, episode_fold != f]), **mlp_options)
        Yhat[test] = predict(Xr[test])
    return ridge.unflatten_episodes(Yhat, B)


def score_scale(Y, min_sd=MIN_SD):
    """The unit each column of target states Y (T, B, M) is scored in: the sd over (t, e) of
    its one-step change Δ_t = Y_{t+1} − Y_t, as in step_dissimilarity; for a column whose Δ
    has sd < min_sd (one the score leaves out), the sd of the column itself (1 if constant)."""
    M = Y.shape[-1]
    sd_delta = np.diff(Y, axis=0).reshape(-1, M).std(0)
    return np.where(sd_delta >= min_sd, sd_delta, _safe_sd(Y.reshape(-1, M)))


def fit_ridge_per_column(X, Y, groups, rng, lambdas=MAP_LAMBDAS, k_inner=INNER_FOLDS):
    """Ridge (ridge.ridge_path) with λ chosen *per target column* by a k_inner-fold CV over these
    episodes (pooled held-out SSE), on the grid MAP_LAMBDAS. Returns the ridge.RidgeFit (lam:
    the λ of each column); ridge.ridge_predict applies it."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    sse = ridge.held_out_sse_path(X, Y, ridge.episode_folds(groups, k_inner, rng), lambdas)
    best = sse.argmin(0)                                       # (M,) index of each column's λ
    mu, sd, y_mean, W = ridge.ridge_path(X, Y, lambdas)
    W = W[best, :, np.arange(Y.shape[1])].T                    # (D, M): column m at λ_best[m]
    return ridge.RidgeFit(mu=mu, sd=sd, W=W, y_mean=y_mean, lam=lambdas[best])


# --- the MLP map: forward and backward side by side ---------------------------------------
def mlp_init(n_in, n_hidden, n_out, rng, dtype=np.float64):
    """W1 (n_in, n_hidden) uniform ±1/√n_in, b1 0, W2 (n_hidden, n_out) uniform ±1/√n_hidden,
    b2 0: tanh starts in its linear range on standardised inputs."""
    P = {"W1": rng.uniform(-1, 1, (n_in, n_hidden)) / np.sqrt(n_in), "b1": np.zeros(n_hidden),
         "W2": rng.uniform(-1, 1, (n_hidden, n_out)) / np.sqrt(n_hidden), "b2": np.zeros(n_out)}
    return {k: v.astype(dtype) for k, v in P.items()}


def mlp_forward(P, X):
    """One hidden tanh layer, X (N, F):

        A = X W1 + b1        (N, n_hidden)
        Z = tanh(A)
        Ŷ = Z W2 + b2        (N, M)
    Returns Ŷ and the cache Z that mlp_backward needs."""
    Z = np.tanh(X @ P["W1"] + P["b1"])
    return Z @ P["W2"] + P["b2"], Z


def mlp_backward(P, X, Z, dY):
    """Differentiates mlp_forward: from dL/dŶ (N, M) to the parameter gradients.

        dW2 = Zᵀ dŶ,   db2 = Σ_n dŶ,   dZ = dŶ W2ᵀ
        dA  = dZ ⊙ (1 − Z²)                    (tanh' = 1 − tanh²)
        dW1 = Xᵀ dA,   db1 = Σ_n dA"""
    dA = (dY @ P["W2"].T) * (1.0 - Z * Z)
    return {"W1": X.T @ dA, "b1": dA.sum(0), "W2": Z.T @ dY, "b2": dY.sum(0)}


def mse_loss(Yhat, Y):
    """L = (1/(N M)) Σ (Ŷ − Y)² and dL/dŶ = 2 (Ŷ − Y) / (N M)."""
    diff = Yhat - Y
    return float((diff * diff).mean()), mse_gradient(Yhat, Y)


def mse_gradient(Yhat, Y):
    """dL/dŶ of mse_loss alone (what a training step needs)."""
    diff = Yhat - Y
    return diff * (2.0 / diff.size)


MLP_STEPS = 500      # Adam steps per initialisation: a fixed budget, whatever the data size
MLP_INITS = 2        # initialisations; the best on the validation episodes is kept
MLP_CHECK_EVERY = 50  # steps between validation checks


def fit_mlp(X, Y, groups, rng, linear, y_scale, hidden=32, lr=5e-3, batch=1024, steps=MLP_STEPS,
            inits=MLP_INITS, check_every=MLP_CHECK_EVERY, validation=0.2, dtype=np.float32):
    """The MLP map: the linear map plus a one-hidden-layer tanh net on what it leaves,

        Ŷ = ridge_predict(linear, X) + y_scale ⊙ f((X − μ) / sd),   f = mlp_forward,

    with f fitted by metarl's Adam to the linear map's residual in units of y_scale (per
    column: the unit the map is scored in, score_scale), so that the squared error it
    minimises weighs the columns as the score does. μ, sd: the linear map's. `validation`
    of the episodes (whole episodes) are held out of f's fit (the linear map, given, was
    fitted on all of them: the comparison at the checks is between nets on the same
    residual, and the linear map is favoured if anything); f runs `steps` Adam steps of
    `batch` rows from each of `inits` initialisations, and the parameters with the lowest
    validation error at any check (every `check_every` steps) are kept, f = 0 (the linear
    map alone) among them: the map cannot do worse than the linear one on the validation
    episodes. f is fitted in `dtype` (float32: a map needs no more, and it halves the cost).
    Returns predict(X) in the targets' units."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    Xs = ((X - linear.mu) / linear.sd).astype(dtype)
    R = ((Y - ridge.ridge_predict(linear, X)) / y_scale).astype(dtype)   # residual, scored units
    ids = np.unique(groups)
    val_ids = rng.choice(ids, size=max(1, int(round(validation * len(ids)))), replace=False)
    val = np.isin(groups, val_ids)
    Xt, Rt, Xv, Rv = Xs[~val], R[~val], Xs[val], R[val]
    best_P = None                                # f = 0: Rhat = 0 on the validation rows
    best = float((Rv * Rv).mean())
    for _ in range(inits):
        P = mlp_init(X.shape[1], hidden, Y.shape[1], rng, dtype)
        opt = metarl.adam_init(P)
        order, start = rng.permutation(len(Xt)), 0
        for step in range(1, steps + 1):
            if start >= len(order):
                order, start = rng.permutation(len(Xt)), 0
            rows = order[start:start + batch]
            start += batch
            X_b = Xt[rows]
            Rhat, Z = mlp_forward(P, X_b)
            metarl.adam_step(P, mlp_backward(P, X_b, Z, mse_gradient(Rhat, Rt[rows])), opt, lr)
            if step % check_every == 0:
                loss = mse_loss(mlp_forward(P, Xv)[0], Rv)[0]
                if loss < best:
                    best, best_P = loss, {k: v.copy() for k, v in P.items()}
    if best_P is None:
        return partial(ridge.ridge_predict, linear)
    return lambda Xq: ridge.ridge_predict(linear, Xq) + y_scale * mlp_forward(
        best_P, ((np.asarray(Xq, np.float64) - linear.mu) / linear.sd).astype(dtype))[0]


def _safe_sd(X):
    sd = X.std(0)
    return np.where(sd > ridge.CONSTANT_SD * (1 + np.abs(X.mean(0))), sd, 1.0)


# ==========================================================================================
# 1. State-machine simulation, both directions
# ==========================================================================================
def step_dissimilarity(target, mapped, min_sd=MIN_SD):
    """How far one step of the target machine from mapped states lands from the next mapped
    state, against how much the target itself moves in one step:

        D_j = Σ_{t<T−1, e} (target.step(mapped_t)_j − mapped_{t+1, j})²
              / Σ_{t<T−1, e} (Δ_{t,e,j} − mean Δ_j)²,     Δ_t = target.states[t+1] − states[t]

    per target coordinate j, averaged over the coordinates whose Δ has sd ≥ min_sd. 0 is a
    perfect simulation; 1 is no better than predicting the mean one-step change. The
    normaliser is the one-step change, not the variance of the states over all steps: counts
    grow with t, so that variance makes any map look perfect. A map that knows only t scores
    about 1 when the target's step adds the event (bandit counts), but less when the step
    itself forgets (Tiger's reset at an opening, an input-driven LSTM) and more when a map of
    many inputs fits noise: read it beside the shuffled-target control (shuffled=True).
    A map error ε_t that is not carried along by the step costs about 2 Var(ε) / Var(Δ).
    Returns (mean over kept coordinates, pooled Σ_j num / Σ_j den, kept count)."""
    T = len(mapped)
    stepped = np.stack([target.step(mapped[t], t) for t in range(T - 1)])  # (T−1, B, D)
    num = ((stepped - mapped[1:]) ** 2).sum((0, 1))
    delta = target.states[1:] - target.states[:-1]                         # (T−1, B, D)
    den = ((delta - delta.mean((0, 1))) ** 2).sum((0, 1))
    keep = delta.std((0, 1)) >= min_sd
    if not keep.any():
        raise ValueError("no target coordinate changes from step to step (sd of Δ < min_sd)")
    return float((num[keep] / den[keep]).mean()), float(num[keep].sum() / den[keep].sum()), int(keep.sum())


def agent_to_bayes(agent, bayes, fold, kind, rng, shuffled=False, mapped=None, **mlp_options):
    """φ: agent state → Bayes state, cross-fitted over episodes (or `mapped`, φ(s_t) (T, B, D)
    already fitted: machines that share states share it); then

    state_dissimilarity  step_dissimilarity of the Bayes step from φ(s_t) against φ(s_{t+1});
    output_kl            KL(π_Bayes(φ(s_t)) ‖ π_agent(s_t)), nats/step, π_Bayes the tie-split
                         Bayes-optimal policy at the mapped state (tabular references: at the
                         nearest exact belief state; two-step: belief-greedy);
    output_kl_baseline   KL(π_Bayes(φ(s_t)) ‖ π̄_agent), π̄_agent the agent's mean policy:
                         what an agent with no information about the episode would score;
    output_kl_relative   output_kl / output_kl_baseline (1: the agent's policy tells no more);
    output_kl_exact      KL(π_Bayes(b_t) ‖ π_agent(s_t)) at the exact belief: what a perfect
                         map would score, since the agent's own policy is not Bayes-optimal;
    action_agreement     fraction of steps whose most likely agent action is Bayes-optimal at
                         φ(s_t) (action_agreement_exact: at b_t; _baseline: the mean policy's).
    The Bayes policy is deterministic away from ties, so every KL here is dominated by
    −log π_agent(a_Bayes) at the steps where the agent disagrees."""
    if mapped is None:
        mapped = cross_fitted(agent.inputs(), bayes.states, fold, kind, rng, shuffled, **mlp_options)
    pi_bayes = bayes.policies(mapped)
    pi_agent = agent.policies()
    result = _direction_result(bayes, mapped, pi_bayes, pi_agent, pi_agent)
    A = pi_agent.shape[-1]
    pi_exact = bayes.policies()
    result["output_kl_exact"] = belief.policy_kl(pi_exact.reshape(-1, A), pi_agent.reshape(-1, A))
    result["action_agreement_exact"] = _agreement(pi_exact, pi_agent)
    return result


def bayes_to_agent(bayes, agent, fold, kind, rng, shuffled=False, mapped=None, **mlp_options):
    """ψ: Bayes features → agent state, cross-fitted over episodes (or `mapped`, ψ(b_t), already
    fitted); then

    state_dissimilarity  step_dissimilarity of one LSTM step from ψ(b_t) (reading x_{t+1})
                         against ψ(b_{t+1}), normalised by the actual [h, c] change;
    output_kl            KL(π_agent(s_t) ‖ policy head at ψ(b_t));
    output_kl_baseline   KL(π_agent(s_t) ‖ π̄_agent);  output_kl_relative their ratio;
    action_agreement     fraction of steps where the head at ψ(b_t) and the agent at s_t have
                         the same most likely action.
    An untrained network's policy is near-uniform (W_pi starts ×0.01), so its raw output_kl
    is ≈ 0 by construction here: read output_kl_relative, and agent_to_bayes's output."""
    if mapped is None:
        mapped = cross_fitted(bayes.inputs(), agent.states, fold, kind, rng, shuffled, **mlp_options)
    pi_agent = agent.policies()
    return _direction_result(agent, mapped, pi_agent, agent.policies(mapped), pi_agent)


def _direction_result(target, mapped, p_ref, p_model, pi_agent):
    """The measures shared by both directions; map_r2 is the held-out R² of the mapped states
    (mean over target coordinates with sd ≥ MIN_SD): how well the map fits, before stepping;
    map_error the held-out mean squared error in the units the MLP map is fitted in
    (score_scale), averaged over coordinates: the number on which no map may lose to the
    linear one."""
    mean_policy = pi_agent.reshape(-1, pi_agent.shape[-1]).mean(0)
    A = p_ref.shape[-1]
    kl = belief.policy_kl(p_ref.reshape(-1, A), p_model.reshape(-1, A))
    kl0 = belief.policy_kl(p_ref.reshape(-1, A), np.broadcast_to(mean_policy, p_ref.shape).reshape(-1, A))
    dis, pooled, kept = step_dissimilarity(target, mapped)
    Y, Yhat = (ridge.flatten_episodes(v)[0] for v in (target.states, mapped))
    varying = Y.std(0) >= MIN_SD
    map_error = float((((Y - Yhat) / score_scale(target.states)) ** 2).mean())
    return {"state_dissimilarity": dis, "state_dissimilarity_pooled": pooled,
            "coordinates_kept": kept, "map_r2": float(ridge.r2_score(Y[:, varying], Yhat[:, varying]).mean()),
            "map_error": map_error,
            "output_kl": kl, "output_kl_baseline": kl0,
            "output_kl_relative": kl / kl0 if kl0 > 0 else float("nan"),
            "action_agreement": _agreement(p_ref, p_model),
            "action_agreement_baseline": _agreement(p_ref, np.broadcast_to(mean_policy, p_ref.shape))}


def _agreement(p_ref, p_model):
    """Fraction of steps whose most likely action under p_model (ties split evenly) is one of
    the most likely actions under p_ref; (T, B, A) each."""
    A = p_ref.shape[-1]
    ref, model = p_ref.reshape(-1, A), p_model.reshape(-1, A)
    best = ref >= ref.max(1, keepdims=True) - TIE_TOL
    return float((_most_likely(model) * best).sum(1).mean())


def simulation(agents, bayes, fold, seed, kinds=("linear", "mlp"), shuffled=False, **mlp_options):
    """Both directions for every network in `agents` ({"trained": Machine, "untrained": ...},
    all on the same episodes as `bayes`) and every map kind, on the same folds. Every fit
    starts from default_rng(seed), so the networks share inner folds, MLP initial weights
    and shuffles too: their difference is the networks'.

    Returns {direction: {measure: {network: {kind: value}}}}, direction ∈ {agent_to_bayes,
    bayes_to_agent}, measure ∈ the keys of that direction's result."""
    out = {"agent_to_bayes": {}, "bayes_to_agent": {}}
    for network, agent in agents.items():
        for kind in kinds:
            results = {"agent_to_bayes": agent_to_bayes(agent, bayes, fold, kind,
                                                        np.random.default_rng(seed), shuffled,
                                                        **mlp_options),
                       "bayes_to_agent": bayes_to_agent(bayes, agent, fold, kind,
                                                        np.random.default_rng(seed), shuffled,
                                                        **mlp_options)}
            for direction, result in results.items():
                for measure, value in result.items():
                    out[direction].setdefault(measure, {}).setdefault(network, {})[kind] = value
    return out


# ==========================================================================================
# 2. Minimality: history the state holds beyond the belief
# ==========================================================================================
def belief_design(bayes):
    """The belief-only regressors of minimality, (T, B, n): the Bayes machine's features
    f(b_t), all their squares and pairwise products, and t, t² (t/T scaled), so that a
    nonlinear dependence of a history feature on the belief is not credited to the state."""
    F = bayes.inputs()                                                  # (T, B, n_f)
    T = len(F)
    i, j = np.triu_indices(F.shape[-1])
    tt = np.broadcast_to((np.arange(T) / T)[:, None, None], F.shape[:2] + (1,))
    return np.concatenate([F, F[..., i] * F[..., j], tt, tt ** 2], axis=-1)


def minimality(machine, bayes, history, names, fold, seed, belief_sse=None):
    """Partial R² of each history feature beyond the belief, and the within/between ratio.

    history (T, B, n): features of the history that the belief does not determine (NaN where
    undefined; only steps where all are defined are used). For feature y, with held-out
    predictions over the same episode folds,
        partial R² = 1 − SSE(belief + state) / SSE(belief only),
    belief = belief_design(bayes) and state = machine.states, both by ridge with λ per column
    from an inner CV. ≈ 0: the state holds nothing of y that the belief lacks. Both fits start
    from default_rng(seed): SSE(belief only) is the same for every machine given one seed.
    within_between_whitened: the same ratio on whiten(states), invariant to any invertible
    linear map of the state (the per-unit standardised ratio is invariant to scale only).
    belief_sse: belief_only_sse(bayes, history, fold, seed), if already computed for these
    episodes (it does not depend on the machine).
    Returns {"partial_r2": {name: value}, "within_between_ratio", "within_between_whitened",
    "within_between_rows", "steps_used", "belief_design"}."""
    Xb, t_used = belief_design(bayes), used_steps(history)
    Y = history[t_used]
    full = np.concatenate([Xb[t_used], machine.states[t_used]], axis=-1)
    sse_b = belief_only_sse(bayes, history, fold, seed) if belief_sse is None else belief_sse
    sse_f = _held_out_sse(full, Y, fold, np.random.default_rng(seed))
    ratio = within_between_ratio(machine.states, bayes.states)
    whitened = within_between_ratio(whiten(machine.states), bayes.states)
    return {"partial_r2": {n: float(1 - f / b) if b > 0 else float("nan")
                           for n, f, b in zip(names, sse_f, sse_b)},
            "within_between_ratio": ratio["ratio"], "within_between_rows": ratio["rows"],
            "within_between_whitened": whitened["ratio"],
            "steps_used": [int(t_used[0]), int(t_used[-1])],
            "belief_design": "Bayes features, their squares and pairwise products, t/T, (t/T)²"}


def used_steps(history):
    """The steps at which every history feature is defined (T,) → indices."""
    return np.flatnonzero(np.isfinite(history).all(axis=(1, 2)))


def belief_only_sse(bayes, history, fold, seed):
    """minimality's held-out SSE of each history feature from the belief alone."""
    t_used = used_steps(history)
    return _held_out_sse(belief_design(bayes)[t_used], history[t_used], fold,
                         np.random.default_rng(seed))


def _held_out_sse(X, Y, fold, rng):
    Yhat = cross_fitted(X, Y, fold, "linear", rng)
    return ((Y - Yhat) ** 2).sum((0, 1))


def whiten(states, rel_tol=1e-8):
    """states (T, B, D) in whitened coordinates: Z = (X − X̄) V Λ^{−1/2} over the principal
    axes whose variance λ exceeds rel_tol · λ_max (the rest is rounding or dead units).
    For any invertible A, whiten(states A) = whiten(states) R with R orthogonal (on the kept
    axes), so sums of squares of Z, and the within/between ratio, do not depend on A."""
    X = states.reshape(-1, states.shape[-1])
    Xc = X - X.mean(0)
    lam, V = np.linalg.eigh(Xc.T @ Xc / len(Xc))
    keep = lam > rel_tol * max(lam.max(), 0.0)
    return (Xc @ (V[:, keep] / np.sqrt(lam[keep]))).reshape(states.shape[:-1] + (int(keep.sum()),))


def within_between_ratio(states, coordinates, min_sd=MIN_SD, decimals=6):
    """Spread of the state among histories with the same sufficient statistic, against the
    spread between such groups, at the same t:

        ratio = [SS_within / (n − G)] / [SS_between / (G − n_t)]

    over the groups (t, exact coordinates rounded to `decimals`) with ≥ 2 episodes, on states
    standardised per coordinate (coordinates with sd < min_sd dropped); SS_between is taken
    about each step's own mean, n_t counts the steps with ≥ 2 such groups. A machine whose
    state is a function of the belief gives 0; a state unrelated to it gives ≈ 1."""
    X = states.reshape(-1, states.shape[-1])
    sd = X.std(0)
    keep = sd >= min_sd
    Xs = ((states[..., keep] - X[:, keep].mean(0)) / sd[keep])         # (T, B, D')
    ss_w = ss_b = 0.0
    df_w = df_b = rows = 0
    for t in range(len(states)):
        _, g, n = np.unique(np.round(coordinates[t], decimals), axis=0, return_inverse=True,
                            return_counts=True)
        g = g.ravel()
        members = n[g] >= 2
        groups = np.unique(g[members])
        if len(groups) < 2:
            continue
        x, gm = Xs[t][members], g[members]
        means = np.stack([x[gm == k].mean(0) for k in groups])          # (G_t, D')
        counts = n[groups]
        ss_w += float(((x - means[np.searchsorted(groups, gm)]) ** 2).sum())
        ss_b += float((counts[:, None] * (means - x.mean(0)) ** 2).sum())
        df_w, df_b, rows = df_w + len(x) - len(groups), df_b + len(groups) - 1, rows + len(x)
    if df_b == 0 or df_w == 0:
        return {"ratio": float("nan"), "rows": rows}
    return {"ratio": (ss_w / df_w) / (ss_b / df_b), "rows": rows}


# ==========================================================================================
# 3. Causal test: state splicing
# ==========================================================================================
SPLICE_STREAM = 2 ** 33 + 1  # splice rollouts: stream(seed, SPLICE_STREAM), beside probe.PROBE_STREAM


def splice_times(T):
    """The default splice steps t_s: T/10, T/4 and T/2 (2-arm bandit T = 100: 10, 25, 50;
    Tiger T = 20: 2, 5, 10), early, middle and late in the belief's convergence; never < 2,
    since the donor's state must have read at least one event (x_1 encodes event 0)."""
    return sorted({max(2, T // 10), max(2, T // 4), max(2, T // 2)})


def derangement(B, rng):
    """donor (B,): a random permutation with one cycle through all episodes, so no episode is
    its own donor (as ridge.shuffle_targets_across_episodes)."""
    perm = rng.permutation(B)
    donor = np.empty(B, dtype=np.int64)
    donor[perm] = np.roll(perm, 1)
    return donor


def splice_donors(episodes, seed, times):
    """One donor array (B,) per splice time, derangements drawn from stream(seed,
    SPLICE_STREAM, 1): the agent and the control are spliced with the same donors."""
    rng = metarl.stream(seed, SPLICE_STREAM, 1)
    return [derangement(episodes, rng) for _ in times]


def splice_runs(params, cfg, episodes, seed, times=None):
    """The original rollout and, for each t_s, the rollout with the state carried into step
    t_s replaced by a donor episode's (metarl.rollout(..., implant=(t_s, h, c))). Both use
    stream(seed, SPLICE_STREAM): the same tasks, noise and action uniforms, so the steps
    before t_s are identical and the agent then goes on in the recipient's task.
    Returns (original Trajectory, [{"t_s", "donor" (B,), "run": Trajectory}])."""
    times = _check_splice_times(cfg, times)
    original = metarl.rollout(params, cfg, episodes, metarl.stream(seed, SPLICE_STREAM))
    runs = []
    for t_s, donor in zip(times, splice_donors(episodes, seed, times)):
        run = metarl.rollout(params, cfg, episodes, metarl.stream(seed, SPLICE_STREAM),
                             implant=(t_s, original.h[t_s][donor], original.c[t_s][donor]))
        runs.append({"t_s": t_s, "donor": donor, "run": run})
    return original, runs


def _check_splice_times(cfg, times):
    times = splice_times(cfg.horizon) if times is None else list(times)
    for t_s in times:
        if not 2 <= t_s < cfg.horizon:
            raise ValueError(f"splice times must be in [2, T) = [2, {cfg.horizon}), got {t_s}")
    return times


@dataclass
class _Run:
    """The arrays of a run that the splice analysis reads (a Trajectory has them too)."""

    a: np.ndarray
    r: np.ndarray
    obs: np.ndarray
    pi: np.ndarray


def control_run(cfg, ref, episodes, seed, window=CONTROL_WINDOW, implant=None):
    """The splice control acting on its own in the agent's episodes (the env seeded from
    stream(seed, SPLICE_STREAM), as splice_runs): its state is the last `window` events it
    read, its belief the exact filter run from the prior over them (the family's step), and
    it acts by the family's control_q (bandits: greedy on the windowed posterior means;
    Tiger: Bayes-optimal Q at the windowed d; two-step: belief-greedy), ties broken by
    uniforms drawn once, so a spliced run repeats the original up to the splice.
    implant = (t_s, events (a, r, obs) of steps < t_s − 1, each (t_s − 1, B, …)): the history
    it carries into step t_s is replaced, as metarl.rollout's implant does for the LSTM.
    Returns a record with a (T, B), r, obs and π (T, B, A) = the tie-split control policy."""
    T, B, A = cfg.horizon, episodes, envs.n_actions(cfg)
    rng = metarl.stream(seed, SPLICE_STREAM)
    env = envs.make_env(cfg, B)
    env.reset(rng)
    u = metarl.stream(seed, SPLICE_STREAM, 2).random((T, B))
    a, r = np.zeros((T, B), dtype=np.int64), np.zeros((T, B))
    obs, pi = np.zeros((T, B, envs.n_observations(cfg))), np.zeros((T, B, A))
    read = [a.copy(), r.copy(), obs.copy()]          # the history the machine has read
    for t in range(T):
        if implant is not None and t == implant[0]:
            for past, donor_events in zip(read, implant[1]):
                past[:t - 1] = donor_events
        pi[t] = window_policy(cfg, ref, *read, t, window)
        kernels.sample_categorical(pi[t], u[t], a[t])  # uniform among the tied actions
        _, r[t], _ = env.step(a[t])
        obs[t] = env.obs
        for past, now in zip(read, (a[t], r[t], obs[t])):
            past[t] = now
    return _Run(a=a, r=r, obs=obs, pi=pi)


def window_policy(cfg, ref, a, r, obs, t, window=CONTROL_WINDOW):
    """The splice control's policy at step t from the events it has read, (B, A): the exact
    filter from the prior over events max(0, t − window) … t − 1 of a (T, B), r, obs, then the
    tie-split policy of the family's control scores there."""
    fam = family(cfg)
    S = fam.prior(cfg, a.shape[1])
    for v in range(max(0, t - window), t):
        S = fam.step(cfg, S, a[v], r[v], obs[v])
    return belief.tie_split_policy(fam.control_q(cfg, ref, S, t), atol=TIE_TOL)


def control_splice_runs(cfg, ref, episodes, seed, times=None, window=CONTROL_WINDOW):
    """splice_runs for the windowed control: the same episodes, times and donors."""
    times = _check_splice_times(cfg, times)
    original = control_run(cfg, ref, episodes, seed, window)
    runs = []
    for t_s, donor in zip(times, splice_donors(episodes, seed, times)):
        events = tuple(getattr(original, k)[:t_s - 1][:, donor] for k in ("a", "r", "obs"))
        runs.append({"t_s": t_s, "donor": donor,
                     "run": control_run(cfg, ref, episodes, seed, window, implant=(t_s, events))})
    return original, runs


def spliced_history(original, splice):
    """The history the spliced state has read by each step: the donor's events 0 … t_s − 2,
    then the recipient's (spliced run's) events t_s − 1 …; (a, r, obs) arrays (T, B, …)."""
    t_s, donor, run = splice["t_s"], splice["donor"], splice["run"]
    return tuple(np.concatenate([getattr(original, k)[:t_s - 1][:, donor], getattr(run, k)[t_s - 1:]])
                 for k in ("a", "r", "obs"))


def splice_agreement(cfg, ref, original, splices):
    """Does the spliced machine act on the spliced history (a belief state) or on its own?

    For each splice and each lag k = t − t_s ≥ 0, at the steps where the Bayes-optimal action
    sets under (i) the spliced history (donor events 0 … t_s − 2, recipient events t_s − 1 …
    t − 1) and (ii) the recipient's true history (its events 0 … t − 1) are disjoint (ties
    excluded), the fraction of steps whose most likely action is in set (i) and in set (ii)
    (tied most likely actions count fractionally). Ceiling, agreement_own: the unspliced
    run's agreement with the Bayes action under its own history at the same steps t (steps
    whose Bayes set is all actions left out).
    `original`, each splice's `run`: anything with a (T, B), r, obs, π (T, B, A) arrays.
    Returns totals over all lags, per-lag lists and the steps counted."""
    fam = family(cfg)
    T = original.a.shape[0]
    totals = np.zeros((T, 5))   # per lag: steps, agree (i), agree (ii), own steps, own agree
    own_coords = exact_coordinates(cfg, original.a, original.r, original.obs)
    for splice in splices:
        t_s, run = splice["t_s"], splice["run"]
        coords_i = exact_coordinates(cfg, *spliced_history(original, splice))
        coords_ii = exact_coordinates(cfg, run.a, run.r, run.obs)
        for t in range(t_s, T):
            best_i = _best(fam.q(cfg, ref, coords_i[t], t))
            best_ii = _best(fam.q(cfg, ref, coords_ii[t], t))
            counted = ~(best_i & best_ii).any(1)
            choice = _most_likely(run.pi[t])
            best_own = _best(fam.q(cfg, ref, own_coords[t], t))
            informative = ~best_own.all(1)
            totals[t - t_s] += [counted.sum(), (choice * best_i)[counted].sum(),
                                (choice * best_ii)[counted].sum(), informative.sum(),
                                (_most_likely(original.pi[t]) * best_own)[informative].sum()]
    lags = T - min(s["t_s"] for s in splices)
    steps, own_steps = totals[:lags, 0], totals[:lags, 3]

    def rate(hits, n):
        return [float(h / m) if m > 0 else None for h, m in zip(hits, n)]

    def overall(hits, n):
        return float(hits.sum() / n.sum()) if n.sum() > 0 else None

    return {"agreement_spliced": overall(totals[:lags, 1], steps),
            "agreement_recipient": overall(totals[:lags, 2], steps),
            "agreement_own": overall(totals[:lags, 4], own_steps),
            "steps": int(steps.sum()),
            "per_lag": {"agreement_spliced": rate(totals[:lags, 1], steps),
                        "agreement_recipient": rate(totals[:lags, 2], steps),
                        "agreement_own": rate(totals[:lags, 4], own_steps),
                        "steps": [int(s) for s in steps]},
            "splice_times": [int(s["t_s"]) for s in splices]}


SPLICE_LAG_MIN = CONTROL_WINDOW   # lags judged: from the control's window on it has read
                                 # nothing of the donor


def splice_contrast(splice, lag_min=SPLICE_LAG_MIN):
    """Agreement with the spliced history minus with the recipient's, over the steps at lags
    ≥ lag_min (per-lag rates weighted by their steps; 0 if no step was counted there)."""
    lag = splice["per_lag"]
    steps = np.array(lag["steps"][lag_min:], dtype=float)
    if steps.sum() == 0:
        return 0.0
    spliced = np.nan_to_num(np.array(lag["agreement_spliced"][lag_min:], dtype=float))
    recipient = np.nan_to_num(np.array(lag["agreement_recipient"][lag_min:], dtype=float))
    return float(((spliced - recipient) * steps).sum() / steps.sum())


def splice_test(params, cfg, ref, episodes, seed, times=None, window=CONTROL_WINDOW):
    """The whole causal test: splice_agreement of the agent, and under "control" that of the
    windowed control spliced the same way (same episodes, times and donors)."""
    result = splice_agreement(cfg, ref, *splice_runs(params, cfg, episodes, seed, times))
    result["control"] = splice_agreement(cfg, ref, *control_splice_runs(cfg, ref, episodes, seed,
                                                                         times, window))
    result["control"]["window"] = window
    return result


def _most_likely(pi):
    """The most likely action(s) of π (B, A) as weights summing to 1 (ties split evenly)."""
    top = pi >= pi.max(1, keepdims=True)
    return top / top.sum(1, keepdims=True)


def _best(q):
    """The tied-maximal actions of Q (B, A), as a boolean mask (gaps below TIE_TOL tie)."""
    return q >= q.max(1, keepdims=True) - TIE_TOL


# ==========================================================================================
# 5. Interchange: swap the part of the state a linear map aligns with the belief
# ==========================================================================================
def aligned_subspace(X, Y, groups, rng):
    """U (D, r): an orthonormal basis of the directions of state space that a linear map from
    states X (n, D) to belief coordinates Y (n, m) reads, the column space of its coefficients
    A (D, m) in the states' own units (ridge.ridge_coefficients of fit_ridge_per_column): the
    map sees s only through Aᵀs, so only the part U Uᵀ s. r = rank A (singular values above
    1e-10 of the largest). Linear on purpose: a nonlinear alignment finds a belief in a
    random network (Sutter et al. 2025), so it could not tell which machine uses one."""
    A, _ = ridge.ridge_coefficients(fit_ridge_per_column(X, Y, groups, rng))
    u, sv, _ = np.linalg.svd(A, full_matrices=False)
    return u[:, sv > 1e-10 * max(sv.max(), 1e-300)]


def random_subspace(D, r, rng):
    """An orthonormal basis (D, r) of a uniformly random r-dimensional subspace (QR of a
    Gaussian matrix): the control of the interchange test."""
    q, _ = np.linalg.qr(rng.standard_normal((D, r)))
    return q


def interchange(machine, bayes, fold, rng):
    """Does the machine act on the belief it carries, as Bayes predicts? For each fold f, the
    aligned subspace U (aligned_subspace: a ridge map from the machine's states to the exact
    belief coordinates, fitted on the other folds' episodes) and a random subspace of the
    same dimension; for each held-out episode e and step t, a donor e' of the same fold
    (derangement) and the swapped state

        s̃ = s_{t,e} + U Uᵀ (s_{t,e'} − s_{t,e}),

    which carries the donor's belief where the map reads it and the recipient's everything
    else. At the steps where the Bayes-optimal actions at the two beliefs share none
    (informative), interchange = mean over them of π(s̃)(A*(b_{t,e'})), the probability the
    machine's policy at s̃ puts on the donor's Bayes-optimal actions: 1 when the machine acts
    by the belief where the map finds it (the exact filter: U spans its whole state, s̃ is the
    donor's state); near 0 when the swap does not move its action. Returns {"interchange",
    "interchange_random" (the same with the random subspace), "informative_steps",
    "dimension" (r per fold)}; interchange NaN with no informative step."""
    S, Y = machine.states, bayes.states
    T, B, D = S.shape
    episode_fold = np.asarray(fold)
    pi_bayes = bayes.policies()                                         # (T, B, A) tie split
    best = pi_bayes > 0
    aligned, control, dims, n = 0.0, 0.0, [], 0
    for f in np.unique(episode_fold):
        held, train = np.flatnonzero(episode_fold == f), np.flatnonzero(episode_fold != f)
        X_train, groups = ridge.flatten_episodes(S[:, train])
        U = aligned_subspace(X_train, ridge.flatten_episodes(Y[:, train])[0], groups, rng)
        R = random_subspace(D, U.shape[1], rng)
        donor = held[derangement(len(held), rng)]
        dims.append(int(U.shape[1]))
        for t in range(T):
            s, s_donor = S[t, held], S[t, donor]
            informative = ~(best[t, held] & best[t, donor]).any(1)
            if not informative.any():
                continue
            target = best[t, donor][informative]
            for P, add in ((U, "aligned"), (R, "random")):
                swapped = s + (s_donor - s) @ P @ P.T
                mass = (machine.policy(swapped, t)[informative] * target).sum(1).sum()
                if add == "aligned":
                    aligned += mass
                else:
                    control += mass
            n += int(informative.sum())
    return {"interchange": aligned / n if n else float("nan"),
            "interchange_random": control / n if n else float("nan"),
            "informative_steps": n, "dimension": dims}


# ==========================================================================================
# 4. Where the agent loses value
# ==========================================================================================
def value_loss(cfg, ref, tr, bins=6):
    """Per step ℓ_t = Σ_a π(a|s_t) (max_a' Q*(b_t, a') − Q*(b_t, a)) at the exact belief b_t
    (gaps below TIE_TOL are rounding and count 0). By the performance-difference identity,
    E[Σ_t ℓ_t] = V*_0 − E[Σ_t r_t] when the actions were sampled from π (bandits and Tiger,
    whose Q* is exact; two-step's Q is belief-greedy's one-step expected reward, so there the
    sum is a myopic shortfall and the identity does not apply: bayes_value is None).

    tr: anything with a, r, obs (T, B, …) and pi (T, B, A). Means come with standard errors
    over episodes as clusters. Returns value_loss_per_step (+ _se), value_loss_uniform_per_step
    (ℓ of the uniform policy π = 1/A at the same beliefs), value_loss_relative (their ratio:
    0 acts Bayes-optimally, 1 loses what acting at random would), value_loss_per_episode
    (+ _se), bayes_value V*_0, agent_return (+ _se), identity_gap (mean of Σ ℓ − (V*_0 − return)
    per episode, + _se), by_t and by_uncertainty (the family's uncertainty measure, quantile
    bins)."""
    fam = family(cfg)
    coords = exact_coordinates(cfg, tr.a, tr.r, tr.obs)[:-1]           # (T, B, D)
    T, B = tr.a.shape
    Q = np.stack([fam.q(cfg, ref, coords[t], t) for t in range(T)])     # (T, B, A)
    gap = Q.max(-1, keepdims=True) - Q
    gap[gap < TIE_TOL] = 0.0
    loss = (np.asarray(tr.pi, np.float64) * gap).sum(-1)               # (T, B)
    uniform = float(gap.mean(-1).mean())   # what π = 1/A would lose at the same beliefs
    per_episode, returns = loss.sum(0), np.asarray(tr.r, np.float64).sum(0)
    V0 = fam.value0(cfg, ref)
    result = {"value_loss_per_step": float(loss.mean()),
              "value_loss_per_step_se": _se(loss.mean(0)),
              "value_loss_uniform_per_step": uniform,
              "value_loss_relative": float(loss.mean()) / uniform if uniform > 0 else float("nan"),
              "value_loss_per_episode": float(per_episode.mean()), "value_loss_per_episode_se": _se(per_episode),
              "bayes_value": V0, "agent_return": float(returns.mean()), "agent_return_se": _se(returns),
              "episodes": B, "uncertainty": fam.uncertainty_name}
    if V0 is not None:
        diff = per_episode - (V0 - returns)
        result["identity_gap"], result["identity_gap_se"] = float(diff.mean()), _se(diff)
    result["by_t"] = {"t": list(range(T)), "mean": [float(m) for m in loss.mean(1)],
                      "se": [_se(loss[t]) for t in range(T)]}
    u = np.stack([fam.uncertainty(cfg, coords[t], t) for t in range(T)])  # (T, B)
    result["by_uncertainty"] = _binned(loss, u, bins)
    return result


def _se(x):
    x = np.asarray(x, np.float64).ravel()
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _binned(loss, u, bins, max_discrete=12):
    """Mean loss in quantile bins of u (one bin per value when u takes ≤ max_discrete values,
    as Tiger's entropy does), with cluster standard errors (episodes as clusters: mean
    m = Σ_e L_e / Σ_e n_e, SE = √(Σ_e (L_e − m n_e)² · B/(B − 1)) / Σ_e n_e)."""
    values = np.unique(np.round(u, 12))
    if len(values) <= max_discrete:
        which, ranges = np.searchsorted(values, np.round(u, 12)), [(v, v) for v in values]
    else:
        edges = np.unique(np.quantile(u, np.linspace(0, 1, bins + 1)))
        which = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, len(edges) - 2)
        ranges = list(zip(edges[:-1], edges[1:]))
    B = loss.shape[1]
    rows = []
    for k, (low, high) in enumerate(ranges):
        inside = which == k
        L, n = (loss * inside).sum(0), inside.sum(0)                    # per episode (B,)
        m = L.sum() / n.sum()
        se = np.sqrt(((L - m * n) ** 2).sum() * B / (B - 1)) / n.sum()
        rows.append({"low": float(low), "high": float(high), "mean": float(m), "se": float(se),
                     "steps": int(n.sum())})
    return rows


# ==========================================================================================
# Family pieces: one record per task family, beside envs.FAMILIES and belief.BELIEFS
# ==========================================================================================
# Everything here reads belief.py through a handful of calls: belief_trajectory (the exact
# filter along episodes), bayes_dp / bayes_q / bayes_value (the bandit DP), tiger_q_table,
# two_step_belief_step / two_step_action_values.

@dataclass(frozen=True)
class Family:
    """The task-specific pieces of the analyses. S are coordinates (B, D) of the Bayes state,
    continuous (a map's output) unless said otherwise; t the step (events read: t)."""

    name: str
    coordinate_names: Callable   # (cfg) → names of the D coordinates
    reference: Callable          # (cfg) → the exact Bayes-optimal reference, built once
    coordinates: Callable        # (cfg, beliefs) → (T + 1, B, D), from belief_trajectory's dict
    prior: Callable              # (cfg, B) → (B, D), the state before any event
    step: Callable               # (cfg, S, a (B,), r (B,), obs (B, n_obs)) → S' (B, D)
    features: Callable           # (cfg, S, t) → (B, F): the richer coordinates
    feature_names: Callable      # (cfg) → names of the F features
    q: Callable                  # (cfg, ref, S, t) → Q*(b, a) (B, A) at the nearest exact state
    value0: Callable             # (cfg, ref) → V*_0, or None when no exact value exists
    uncertainty: Callable        # (cfg, S, t) → (B,) uncertainty of the belief
    uncertainty_name: str
    control_q: Callable          # (cfg, ref, S_window, t) → action scores of the splice control
    history: Callable            # (cfg, a, r, obs) → (T, B, n) NaN where undefined, names


def check_step(cfg, S, a, r, obs):
    """S (B, D) finite coordinates and one event per episode, a (B,), r (B,), obs (B, n_obs),
    as envs.check_history accepts them (actions in [0, A), outcomes the env can give): the
    steps index with a and obs. Returns them as float64 / int64 arrays."""
    S = check_real_array("S", S, (None, len(family(cfg).coordinate_names(cfg))))
    a, r, obs = (np.asarray(v)[None] for v in (a, r, obs))
    check_shape("actions", a, (1, len(S)))
    a, r, obs = envs.check_history(cfg, a, r, obs)
    return S, a[0], r[0], obs[0]


def check_state(cfg, S, t):
    """S (B, D) finite coordinates at step t, an integer in [0, T): the Q lookups index with
    both (a NaN or negative t or state would wrap around an array)."""
    check_int("t", t, 0, cfg.horizon - 1)
    return check_real_array("S", S, (None, len(family(cfg).coordinate_names(cfg))))


def shortest_horizon(cfg, longest=100):
    """The shortest episodes the analyses run on: splicing needs T ≥ 3 (splice_times), and
    minimality a step at which every history feature of the family is defined (bandits look
    5 events back). Found by the family's own history features of a `longest`-step history."""
    a, r = np.zeros((longest, 1), np.int64), np.zeros((longest, 1))
    obs = np.zeros((longest, 1, envs.n_observations(cfg)))
    defined = np.isfinite(family(cfg).history(cfg, a, r, obs)[0]).all(axis=(1, 2))
    return max(3, int(np.argmax(defined)) + 1)


def fewest_episodes(k):
    """The fewest episodes that k-fold analyses accept: 2 per fold (ridge.py), and
    INNER_FOLDS in each outer training set, the rest after a fold of ⌈n / k⌉ is left out."""
    n = 2 * k
    while n - -(-n // k) < INNER_FOLDS:
        n += 1
    return n


def check_sizes(cfg, episodes, k, names=("episodes", "k")):
    """ValueError, before any work, for episodes or folds that a later step would refuse:
    k in [2, 100], episodes ≥ fewest_episodes(k), T ≥ shortest_horizon(cfg). `names` are
    the words for episodes and k in the message (the command line's flags)."""
    check_int(names[1], k, 2, 100)
    fewest = fewest_episodes(k)
    if check_int(names[0], episodes, 1) < fewest:
        raise ValueError(f"{names[0]} must be at least {fewest} with {names[1]} {k} (2 per fold "
                         f"and {INNER_FOLDS} in each fold's training set), got {episodes}")
    shortest = shortest_horizon(cfg)
    if cfg.horizon < shortest:
        raise ValueError(f"the analyses need episodes of at least {shortest} steps on "
                         f"{cfg.name} (splicing needs 3; the history features beyond the belief "
                         f"need {shortest - 1} events), got T = {cfg.horizon}")


def family(cfg):
    """The Family record of cfg's task family; ValueError for an unknown one."""
    if cfg.name not in FAMILIES:
        raise ValueError(f"no machine pieces for env {cfg.name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[cfg.name]


def reference(cfg):
    """The exact reference for cfg (bandit DP, Tiger Q table; none for two-step). The bandit
    DP takes seconds at T = 100: build it once and pass it to everything."""
    return family(cfg).reference(cfg)


def exact_coordinates(cfg, a, r, obs):
    """The exact Bayes state coordinates along episodes, (T + 1, B, D); row t has seen the
    events of steps < t (belief.belief_trajectory, then the family's coordinates)."""
    return family(cfg).coordinates(cfg, belief.belief_trajectory(cfg, a, r, obs))


def _logit(p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def _entropy_bits(p):
    p = np.clip(p, 1e-300, 1.0)
    q = np.clip(1.0 - p, 1e-300, 1.0)
    return -(p * np.log2(p) + q * np.log2(q))


def _lag(x, k):
    """x[t − k] at row t, NaN where t < k; x (T, B)."""
    out = np.full(x.shape, np.nan)
    out[k:] = x[:-k]
    return out


def _switches(a):
    """Number of action switches among the events read by step t, (T, B)."""
    out = np.zeros(a.shape)
    out[2:] = np.cumsum(a[1:] != a[:-1], axis=0)[:-1]
    return out


# --- bandits (k independent arms) and the dependent bandit (arms p and 1 − p) --------------
# Coordinates are the evidence counts of the DP (belief.py, "Bayes-optimal reference"):
# bandit x = (s_0, f_0, s_1, f_1, …), the successes and failures per arm = (α_i − a, β_i − b);
# dependent-bandit x = (α − a, β − b), the pooled evidence for p. Arm i's success adds to
# component su_i, its failure to fa_i (belief.evidence_map): bandit (2i, 2i + 1); dependent
# arm 0 (0, 1), arm 1 (1, 0), since arm 1 pays 1 − p.

def beta_coordinate_names(cfg):
    """Names of the evidence counts: successes and failures of each Beta-distributed unknown."""
    return [f"{s}_{j}" for j in envs.family(cfg.name).task_names(cfg)
            for s in ("successes", "failures")]


def beta_coordinates(cfg, beliefs):
    T1, B = beliefs["alpha"].shape[:2]
    alpha = beliefs["alpha"].reshape(T1, B, -1)                         # (T+1, B, pairs)
    beta = beliefs["beta"].reshape(T1, B, -1)
    x = np.stack([alpha - cfg.prior_a, beta - cfg.prior_b], axis=-1)   # (T+1, B, pairs, 2)
    return x.reshape(x.shape[0], x.shape[1], -1)


def beta_prior(cfg, B):
    return np.zeros((B, 2 * envs.task_dim(cfg)))


def beta_step(cfg, S, a, r, obs):
    """x' = x + r e_{su[a]} + (1 − r) e_{fa[a]}: one pull's evidence, on continuous x."""
    S, a, r, _ = check_step(cfg, S, a, r, obs)
    su, fa, _ = belief.evidence_map(cfg)
    S = S.copy()
    e = np.arange(len(S))
    S[e, su[a]] += r
    S[e, fa[a]] += 1.0 - r
    return S


def beta_pairs(cfg, S):
    """Posterior (α, β) of each Beta factor from evidence x clipped at 0, (B, pairs) each."""
    x = np.maximum(S, 0.0)
    c = belief.evidence_map(cfg)[2]
    return c[0::2] + x[:, 0::2], c[1::2] + x[:, 1::2]


def beta_features(cfg, S, t):
    """[x, n, mean, sd, log-odds of the mean] per Beta factor (n = evidence count), t/T."""
    alpha, beta = beta_pairs(cfg, S)
    mean, sd = alpha / (alpha + beta), np.sqrt(alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1)))
    n = np.maximum(S[:, 0::2], 0.0) + np.maximum(S[:, 1::2], 0.0)
    tt = np.full((len(S), 1), t / cfg.horizon)
    return np.concatenate([S, n, mean, sd, _logit(mean), tt], axis=1)


def beta_feature_names(cfg):
    pairs = envs.family(cfg.name).task_names(cfg)
    return (beta_coordinate_names(cfg) + [f"{s}_{p}" for s in ("count", "mean", "sd", "logodds")
                                          for p in pairs] + ["t/T"])


def nearest_counts(S, t):
    """The nearest exact evidence state at step t: non-negative integers summing to t.
    Euclidean projection onto the simplex {x ≥ 0, Σx = t} (sort-based, Duchi et al. 2008),
    then largest-remainder rounding to integers with the same sum."""
    S = check_real_array("S", S, (None, None))
    B, n = S.shape
    if check_int("t", t, 0) == 0:
        return np.zeros((B, n), dtype=np.int64)
    u = -np.sort(-S, axis=1)                                            # descending
    css = np.cumsum(u, axis=1) - t
    rho = (u - css / np.arange(1, n + 1) > 0).cumsum(1).argmax(1)       # last index where > 0
    theta = css[np.arange(B), rho] / (rho + 1)
    y = np.maximum(S - theta[:, None], 0.0)
    x = np.floor(y)
    short = (t - x.sum(1)).round().astype(np.int64)                     # units still to place
    rank = np.argsort(np.argsort(-(y - x), axis=1, kind="stable"), axis=1)
    return (x + (rank < short[:, None])).astype(np.int64)


def beta_q(cfg, dp, S, t):
    """Q*_t(x, a) of the bandit DP at the nearest exact evidence state (belief.bayes_q)."""
    x = nearest_counts(check_state(cfg, S, t), t)
    alpha, beta = cfg.prior_a + x[:, 0::2], cfg.prior_b + x[:, 1::2]     # (B, pairs)
    return belief.bayes_q(dp, cfg, {"alpha": alpha.astype(np.float64), "beta": beta.astype(np.float64)}, t)


def beta_uncertainty(cfg, S, t):
    """Mean posterior sd over the Beta factors (bandit: arms; dependent-bandit: p)."""
    alpha, beta = beta_pairs(cfg, S)
    return np.sqrt(alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1))).mean(1)


def beta_control_q(cfg, ref, S, t):
    """The windowed control's scores: each arm's posterior mean under the windowed evidence
    p̂_i = (c_su + x_su) / (c_su + c_fa + x_su + x_fa) (greedy, as a leaky value learner)."""
    su, fa, c = belief.evidence_map(cfg)
    x = np.maximum(S, 0.0)
    return (c[su] + x[:, su]) / (c[su] + c[fa] + x[:, su] + x[:, fa])


def bandit_history(cfg, a, r, obs):
    """History features the belief does not determine, (T, B, n), row t over events < t:
    the reward of event t − 1 … t − 5 (t − 1, the last event, too: the belief does not
    determine it, and a state that holds it holds history); the number of action switches; for each arm the order of its outcomes, cov(r_u, u/T) over its pulls u < t (0
    with < 2 pulls). Where arms share an unknown (dependent bandit), also the pulls of arm 0:
    the pooled belief counts outcomes, not which arm gave them."""
    T, B = a.shape
    r = np.asarray(r, np.float64)
    cols = [_lag(r, k) for k in (1, 2, 3, 4, 5)] + [_switches(a)]
    names = [f"reward_t-{k}" for k in (1, 2, 3, 4, 5)] + ["switches"]
    time = (np.arange(T) / T)[:, None]
    for i in range(envs.n_actions(cfg)):
        pulled = (a == i).astype(np.float64)
        n, sr, su, sru = (np.concatenate([np.zeros((1, B)), np.cumsum(v, 0)[:-1]]) for v in
                          (pulled, pulled * r, pulled * time, pulled * r * time))
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = sru / n - (sr / n) * (su / n)
        cols.append(np.where(n >= 2, cov, 0.0))
        names.append(f"outcome_order_arm{i}")
    if envs.task_dim(cfg) < envs.n_actions(cfg):
        cols.append(np.concatenate([np.zeros((1, B)), np.cumsum(a == 0, 0)[:-1]]))
        names.append("pulls_arm0")
    return np.stack(cols, axis=-1), names


BANDIT = Family(
    name="bandit", coordinate_names=beta_coordinate_names, reference=belief.bayes_dp,
    coordinates=beta_coordinates, prior=beta_prior, step=beta_step, features=beta_features,
    feature_names=beta_feature_names, q=beta_q, value0=lambda cfg, dp: belief.bayes_value(dp),
    uncertainty=beta_uncertainty, uncertainty_name="mean posterior sd of the arm means",
    control_q=beta_control_q, history=bandit_history)
DEPENDENT_BANDIT = replace(BANDIT, name="dependent-bandit", uncertainty_name="posterior sd of p")


# --- Tiger: d = #hear-left − #hear-right since the last opening ----------------------------
def tiger_coordinates(cfg, beliefs):
    return beliefs["d"].astype(np.float64)[..., None]                  # (T+1, B, 1)


def tiger_unreset_step(cfg, S, a, r, obs):
    """Listening: d' = d + 1 (hear-left) or d − 1 (hear-right); opening: d' = d (no reset)."""
    S, a, _, obs = check_step(cfg, S, a, r, obs)
    heard = np.where(obs[:, 0] > 0.5, 1.0, -1.0)
    return S + np.where(a == belief.LISTEN, heard, 0.0)[:, None]


def tiger_step(cfg, S, a, r, obs):
    """tiger_unreset_step, then the reset: opening a door places a new tiger, d' = 0."""
    moved = tiger_unreset_step(cfg, S, a, r, obs)   # checks the event first
    return np.where((np.asarray(a) == belief.LISTEN)[:, None], moved, 0.0)


def tiger_log_odds(cfg, S):
    """log P(left)/P(right) = d log(acc / (1 − acc)), (B,)."""
    acc = cfg.listen_accuracy
    return S[:, 0] * (np.log(acc) - np.log1p(-acc))


def tiger_features(cfg, S, t):
    """[d, |d|, d², P(tiger left), its log-odds, entropy of P(left) (bits), t/T]."""
    d, lo = S[:, 0], tiger_log_odds(cfg, S)
    p = 1.0 / (1.0 + np.exp(-lo))
    return np.stack([d, np.abs(d), d * d, p, lo, _entropy_bits(p), np.full(len(d), t / cfg.horizon)], 1)


def tiger_q(cfg, Q, S, t):
    """Q*_t(d, a) from belief.tiger_q_table at the nearest exact d: round, clip to |d| ≤ t."""
    d = np.clip(np.rint(check_state(cfg, S, t)[:, 0]), -t, t).astype(np.int64)
    return Q[t, d + cfg.horizon]


def tiger_history(cfg, a, r, obs):
    """History features the belief (d) does not determine, (T, B, n), row t over events < t:
    listens since the last opening; the first hearing since the last opening (+1 left, −1
    right, 0 none); the hearing of events t − 1 and t − 2 (+1, −1, 0 if it opened a door);
    doors opened so far."""
    T, B = a.shape
    heard = np.where(a == belief.LISTEN, np.where(obs[..., 0] > 0.5, 1.0, -1.0), 0.0)  # (T, B)
    listens, first, opened = np.zeros((T, B)), np.zeros((T, B)), np.zeros((T, B))
    for t in range(1, T):
        listen = a[t - 1] == belief.LISTEN
        listens[t] = np.where(listen, listens[t - 1] + 1, 0)
        first[t] = np.where(listen, np.where(listens[t - 1] == 0, heard[t - 1], first[t - 1]), 0)
        opened[t] = opened[t - 1] + ~listen
    cols = [listens, first, _lag(heard, 1), _lag(heard, 2), opened]
    return np.stack(cols, -1), ["listens_since_open", "first_hearing", "hearing_t-1", "hearing_t-2",
                                "doors_opened"]


TIGER = Family(
    name="tiger", coordinate_names=lambda cfg: ["hear_diff"], reference=belief.tiger_q_table,
    coordinates=tiger_coordinates, prior=lambda cfg, B: np.zeros((B, 1)), step=tiger_step,
    features=tiger_features,
    feature_names=lambda cfg: ["d", "|d|", "d^2", "p_left", "logodds_left", "entropy", "t/T"],
    q=tiger_q, value0=lambda cfg, Q: float(Q[0, cfg.horizon].max()),
    uncertainty=lambda cfg, S, t: _entropy_bits(1 / (1 + np.exp(-tiger_log_odds(cfg, S)))),
    uncertainty_name="entropy of P(tiger left) (bits)",
    control_q=tiger_q, history=tiger_history)


# --- two-step: the log-odds of P(state A is the good one) ----------------------------------
def two_step_coordinates(cfg, beliefs):
    return _logit(beliefs["p_A_good"])[..., None]                      # (T+1, B, 1)


def two_step_step(cfg, S, a, r, obs):
    """The HMM filter (belief.two_step_belief_step) on λ = logit P(A good): λ' = logit f(σ(λ))."""
    S, _, r, obs = check_step(cfg, S, a, r, obs)   # the kernel indexes r and obs by episode
    p = 1.0 / (1.0 + np.exp(-S[:, 0]))
    p = belief.two_step_belief_step(np.ascontiguousarray(p), r, np.ascontiguousarray(obs),
                                    cfg.reward_good, cfg.reward_bad, cfg.swap_prob)
    return _logit(p)[:, None]


def two_step_q(cfg, ref, S, t):
    """Belief-greedy's Q: expected reward of each first-stage action at P(A good) = σ(λ)."""
    return belief.two_step_action_values(cfg, 1.0 / (1.0 + np.exp(-check_state(cfg, S, t)[:, 0])))


def two_step_features(cfg, S, t):
    """[λ, |λ|, P(A good), entropy (bits), t/T]."""
    lo = S[:, 0]
    p = 1.0 / (1.0 + np.exp(-lo))
    return np.stack([lo, np.abs(lo), p, _entropy_bits(p), np.full(len(lo), t / cfg.horizon)], 1)


def two_step_history(cfg, a, r, obs):
    """History features the belief does not determine (it ignores actions and transitions),
    row t over events < t: rewards of events t − 1 … t − 3; whether the transitions of events
    t − 1 and t − 2 were the common ones, their actions; the number of action switches."""
    state = np.where(obs[..., 0] > 0.5, 0, 1)
    common = (state == a).astype(np.float64)
    r, a_f = np.asarray(r, np.float64), a.astype(np.float64)
    cols = [_lag(r, 1), _lag(r, 2), _lag(r, 3), _lag(common, 1), _lag(common, 2), _lag(a_f, 1),
            _lag(a_f, 2), _switches(a)]
    return np.stack(cols, -1), ["reward_t-1", "reward_t-2", "reward_t-3", "common_t-1",
                                "common_t-2", "action_t-1", "action_t-2", "switches"]


TWO_STEP = Family(
    name="two-step", coordinate_names=lambda cfg: ["logodds_A_good"], reference=lambda cfg: None,
    coordinates=two_step_coordinates, prior=lambda cfg, B: np.zeros((B, 1)), step=two_step_step,
    features=two_step_features,
    feature_names=lambda cfg: ["logodds", "|logodds|", "p_A_good", "entropy", "t/T"],
    q=two_step_q, value0=lambda cfg, ref: None,
    uncertainty=lambda cfg, S, t: _entropy_bits(1 / (1 + np.exp(-S[:, 0]))),
    uncertainty_name="entropy of P(A good) (bits)", control_q=two_step_q, history=two_step_history)

FAMILIES = {"bandit": BANDIT, "dependent-bandit": DEPENDENT_BANDIT, "tiger": TIGER,
            "two-step": TWO_STEP}


def history_features(cfg, a, r, obs):
    """The family's history features the belief does not determine: (T, B, n), names."""
    return family(cfg).history(cfg, np.asarray(a), np.asarray(r, np.float64), np.asarray(obs, np.float64))


# ==========================================================================================
# All four analyses of one agent
# ==========================================================================================
def analyse(params, hp, tr, seed, k=FOLDS, simulation_episodes=500, splice_episodes=500,
            controls=None, map_steps=MLP_STEPS):
    """Simulation, minimality, splicing and value loss of the agent (params, hp). Simulation
    and minimality compare it with its untrained network (initial weights driven by the same
    inputs) on the same episodes and folds; splicing and value loss are of the trained agent.
    `controls` {name: (params, own)}: further networks of the same inputs and actions (for
    example a Bayes-distilled LSTM, metarl.py distill), measured beside the untrained one in
    simulation and minimality (driven by the agent's inputs), and on their own in splicing
    and value loss (`own`: the network's own rollout, as `tr` is the agent's).

    tr: the agent's recorded episodes (metarl.rollout); simulation and minimality use its first
    `simulation_episodes` (the MLP maps are the cost, map_steps Adam steps per fit), value
    loss all of them; splicing runs
    `splice_episodes` fresh ones (stream(seed, SPLICE_STREAM)). Returns the JSON-ready dict
    {"simulation": {direction: {measure: {network: {kind: value}}}, "shuffled": the same for
    maps fitted to shuffled targets (trained network, both kinds), the null}, "bayes_coordinates" and
    "bayes_features": what the Bayes machine's state and the maps' belief features are,
    "minimality": {"partial_r2": {network: {feature: value}}, "within_between_ratio":
    {network: value}, ...}, "interchange": {network: interchange's result}, "splice":
    splice_test's result, "value_loss": value_loss's result, and for controls "splice_by_network" and "value_loss_by_network" {name: ...}}."""
    cfg = metarl.env_config(hp)
    metarl.check_param_shapes(params, cfg)   # agent_machine's kernels index them unchecked
    n = min(simulation_episodes, tr.a.shape[1])
    check_sizes(cfg, n, k, ("simulation_episodes", "k"))   # before the DP is built
    check_int("splice_episodes", splice_episodes, 2)
    ref = reference(cfg)
    sub = SimpleNamespace(**{key: getattr(tr, key)[:, :n] for key in ("x", "a", "r", "obs")})
    fold = episode_folds(n, k, np.random.default_rng(seed))
    bayes = bayes_machine(cfg, sub, ref)
    controls = {} if controls is None else controls
    for name, (control, _) in controls.items():
        check_lstm_params(control, envs.n_inputs(cfg))   # before any work
    agents = {"trained": agent_machine(params, sub, "trained"),
              "untrained": agent_machine(metarl.initial_params(hp, cfg, np.float64), sub, "untrained"),
              **{name: agent_machine(control, sub, name) for name, (control, _) in controls.items()}}
    sim = simulation(agents, bayes, fold, seed, steps=map_steps)
    # the null of the trained network, with both kinds of map (verdicts read the MLP's)
    sim["shuffled"] = simulation({"trained": agents["trained"]}, bayes, fold, seed, shuffled=True,
                                 steps=map_steps)
    history, names = history_features(cfg, sub.a, sub.r, sub.obs)
    mini = {net: minimality(m, bayes, history, names, fold, seed) for net, m in agents.items()}
    fam = family(cfg)
    by_network = {}
    if controls:
        by_network = {
            "splice_by_network": {name: splice_test(control, cfg, ref, splice_episodes, seed)
                                  for name, (control, _) in controls.items()},
            "value_loss_by_network": {name: value_loss(cfg, ref, own)
                                      for name, (_, own) in controls.items()}}
    return {"simulation": sim, "simulation_episodes": n, **by_network,
            "bayes_coordinates": fam.coordinate_names(cfg),
            "bayes_features": fam.feature_names(cfg),
            "minimality": {"partial_r2": {net: m["partial_r2"] for net, m in mini.items()},
                           "within_between_ratio": {net: m["within_between_ratio"]
                                                    for net, m in mini.items()},
                           "within_between_whitened": {net: m["within_between_whitened"]
                                                       for net, m in mini.items()},
                           "within_between_rows": mini["trained"]["within_between_rows"],
                           "steps_used": mini["trained"]["steps_used"],
                           "belief_design": mini["trained"]["belief_design"]},
            "interchange": {net: interchange(m, bayes, fold, np.random.default_rng(seed))
                            for net, m in agents.items()},
            "splice": splice_test(params, cfg, ref, splice_episodes, seed),
            "value_loss": value_loss(cfg, ref, tr)}


# ==========================================================================================
# Figures (matplotlib Agg, PNG written atomically)
# ==========================================================================================
DIRECTION_LABEL = {"agent_to_bayes": "agent → Bayes", "bayes_to_agent": "Bayes → agent"}


def plot_simulation(sim, path, title="State-machine simulation"):
    """Left: state dissimilarity per direction, network and map kind (0 perfect, 1 no better
    than the mean one-step change). Right: output KL relative to the no-information baseline
    (an untrained policy is near-uniform, so its raw Bayes → agent KL is ≈ 0 by construction;
    the relative value is what can be compared)."""
    fig, axes = new_figure(1, 2, width=5.0, height=4.5)
    axes = axes[0]
    for ax, measure, label in ((axes[0], "state_dissimilarity", "state dissimilarity (0 perfect, 1 = mean step)"),
                               (axes[1], "output_kl_relative", "output KL / no-information KL")):
        x, ticks = 0, []
        for d in sim:
            for n, net in enumerate(sim[d][measure]):
                for kind, value in sim[d][measure][net].items():
                    ax.bar(x, value, color=f"C{n}", hatch="//" if kind == "mlp" else None,
                           edgecolor="k", label=f"{net}, {kind} map" if d == next(iter(sim)) else None)
                    x += 1
            ticks.append((x - 1 - (len(sim[d][measure]) * len(next(iter(sim[d][measure].values()))) - 1) / 2,
                          DIRECTION_LABEL[d]))
            x += 1
        ax.set_xticks([t for t, _ in ticks], [name for _, name in ticks])
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set(ylabel=label, title=label.split(" (")[0])
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save_png(fig, path, dpi=120)


def plot_minimality(results, path, title="Minimality: history held beyond the belief"):
    """results {network: minimality(...)}. Left: held-out partial R² per history feature;
    right: within/between-group spread ratio (0 for a belief machine, ≈ 1 for unrelated)."""
    fig, axes = new_figure(1, 2, width=5.0, height=4.5)
    axes = axes[0]
    nets = list(results)
    names = list(results[nets[0]]["partial_r2"])
    width = 0.8 / len(nets)
    for k, net in enumerate(nets):
        axes[0].bar(np.arange(len(names)) + (k - (len(nets) - 1) / 2) * width,
                    [results[net]["partial_r2"][n] for n in names], width, label=net)
    axes[0].set_xticks(range(len(names)), [n.replace("_", " ") for n in names], rotation=45,
                       ha="right", fontsize=8)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set(ylabel="held-out partial R² beyond the belief", title="History features")
    axes[0].legend()
    bars = axes[1].bar(nets, [results[n]["within_between_ratio"] for n in nets],
                       color=[f"C{k}" for k in range(len(nets))])
    axes[1].bar_label(bars, fmt="%.3f")
    axes[1].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[1].set(ylabel="within-group / between-group spread", title="Same sufficient statistic")
    fig.suptitle(title)
    save_png(fig, path, dpi=120)


def plot_splice(result, path, title="State splicing: whose history does the agent act on?"):
    """Per lag since the splice, the agreement of the most likely action with the Bayes
    action under the spliced history (i) and the recipient's true history (ii), with the
    unspliced ceiling; left the agent, right the windowed control spliced the same way."""
    fig, axes = new_figure(1, 2, width=5.0, height=4.5)
    axes = axes[0]
    for ax, res, name in ((axes[0], result, "agent"),
                          (axes[1], result["control"], f"control: last {result['control']['window']} events only")):
        lag = res["per_lag"]
        k = np.arange(len(lag["steps"]))
        for key, label, style in (("agreement_spliced", "spliced history (i)", "C0-"),
                                  ("agreement_recipient", "recipient's history (ii)", "C1-"),
                                  ("agreement_own", "ceiling: unspliced run", "k--")):
            ax.plot(k, [np.nan if v is None else v for v in lag[key]], style, label=label)
        ax.set(xlabel="steps since the splice", ylabel="agreement with the Bayes action",
               title=name, ylim=(-0.02, 1.02))
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save_png(fig, path, dpi=120)


def plot_value_loss(result, path, title="Where the agent loses value"):
    """Left: value loss per step by t (± SE over episodes); right: by belief uncertainty bin."""
    fig, axes = new_figure(1, 2, width=5.0, height=4.5)
    axes = axes[0]
    by_t = result["by_t"]
    axes[0].errorbar(by_t["t"], by_t["mean"], yerr=by_t["se"], fmt="C0-", ecolor="C0", elinewidth=0.5)
    axes[0].set(xlabel="step t", ylabel="expected value loss per step", title="By time")
    rows = result["by_uncertainty"]
    centres = [(r["low"] + r["high"]) / 2 for r in rows]
    axes[1].errorbar(centres, [r["mean"] for r in rows], yerr=[r["se"] for r in rows], fmt="C1o-")
    axes[1].set(xlabel=result["uncertainty"] + " (bin centre)", ylabel="expected value loss per step",
                title="By belief uncertainty")
    fig.suptitle(title)
    save_png(fig, path, dpi=120)
