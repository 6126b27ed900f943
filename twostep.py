"""Behavioural analysis of the two-step task (Daw et al. 2011): stay probabilities.

After trial t − 1 the agent either repeats its first-stage choice (stay) or switches. Split by
that trial's transition (common: the state reached is the one the action commonly leads to,
action 0 → A, action 1 → B) and outcome (rewarded or not), a model-free learner stays more
after reward whatever the transition (main effect of reward), while a learner that uses the
transition model stays after common-rewarded and rare-unrewarded trials and switches after
rare-rewarded and common-unrewarded ones (the reward × transition interaction).

Works on the arrays of any policy (actions (T, B), rewards (T, B), obs (T, B, 2) with
obs = one_hot(state)), e.g. from belief.run_policy or metarl.rollout. Beliefs and reference
policies live in belief.py; this file only describes behaviour.
"""
import numpy as np

from metarl import atomic_write

CELLS = ("common rewarded", "rare rewarded", "common unrewarded", "rare unrewarded")
COEFFICIENTS = ("intercept", "reward", "transition", "reward x transition")


def stay_trials(actions, rewards, obs):
    """Every trial t ≥ 1 of every episode as flat arrays (N,), N = (T − 1)·B:
    stay = 1[a_t = a_{t−1}], and the previous trial's reward and transition coded ±1
    (x_r = +1 if rewarded, x_c = +1 if common)."""
    state = obs[..., 1].astype(np.int64)  # (T, B) 0 = A, 1 = B
    stay = (actions[1:] == actions[:-1]).astype(np.float64)
    x_r = np.where(rewards[:-1] > 0.5, 1.0, -1.0)
    x_c = np.where(state[:-1] == actions[:-1], 1.0, -1.0)
    return stay.ravel(), x_r.ravel(), x_c.ravel()


def stay_analysis(actions, rewards, obs):
    """Stay probabilities in the four CELLS and the reward × transition interaction, two ways.

    Cells: p = k / n with the binomial SE √(p(1 − p) / n).
    Difference of differences: [p(CR) − p(CU)] − [p(RR) − p(RU)], SE from the four cells as
    independent. Logistic regression: logit P(stay) = β_0 + β_r x_r + β_c x_c + β_rc x_r x_c.
    The model is saturated (four cells, four β), so its MLE exists only if no cell stays
    always or never; otherwise the coefficients are nan. Both SEs treat trials as independent.

    Returns {"stay": cell → {"p", "se", "n"}, "interaction": {"mean", "se"},
             "logit": COEFFICIENTS → {"mean", "se"}}."""
    stay, x_r, x_c = stay_trials(actions, rewards, obs)
    stays = {}
    for cell, (r, c) in zip(CELLS, ((1, 1), (1, -1), (-1, 1), (-1, -1))):
        y = stay[(x_r == r) & (x_c == c)]
        p = y.mean() if y.size else np.nan
        stays[cell] = {"p": p, "se": np.sqrt(p * (1 - p) / y.size), "n": y.size}
    p = {cell: stays[cell]["p"] for cell in CELLS}
    interaction = (p["common rewarded"] - p["common unrewarded"]
                   - (p["rare rewarded"] - p["rare unrewarded"]))
    interaction_se = np.sqrt(sum(stays[cell]["se"] ** 2 for cell in CELLS))
    if all(0 < stays[cell]["p"] < 1 for cell in CELLS):
        X = np.stack([np.ones_like(x_r), x_r, x_c, x_r * x_c], axis=1)  # (N, 4)
        beta, se = logistic_regression(X, stay)
    else:
        beta = se = np.full(4, np.nan)
    return {"stay": stays, "interaction": {"mean": interaction, "se": interaction_se},
            "logit": {name: {"mean": beta[j], "se": se[j]} for j, name in enumerate(COEFFICIENTS)}}


def logistic_regression(X, y, max_iter=50, tol=1e-10):
    """Maximum-likelihood β of P(y = 1 | x) = σ(x·β) by Newton's method (IRLS), and SE(β).

        p = σ(Xβ),   I(β) = Xᵀ diag(p(1 − p)) X   (the Fisher information, = −Hessian)
        β ← β + I(β)⁻¹ Xᵀ(y − p)
        SE = √diag I(β̂)⁻¹
    Raises ValueError if Newton does not converge within max_iter steps: with separated data
    the likelihood keeps rising as |β| → ∞."""
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
    """Bar plot of the four stay probabilities (± SE) of each policy, one panel per policy,
    in the classic layout: rewarded / unrewarded on the x axis, common and rare bars side by
    side. analyses: name → stay_analysis(...). Written atomically as a PNG."""
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
    fig.suptitle("Two-step task: stay probabilities")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
