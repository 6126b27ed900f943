"""Honest uncertainty for the report: Student-t intervals and tests, and the cluster bootstrap.

With 3 seeds, "mean ± 2 SE" is not a 95 % interval: the standardised mean (x̄ − μ) / SE of
n normal values follows Student's t with n − 1 degrees of freedom, whose 97.5 % quantile is
4.30 for n = 3, and mean ± 2 SE then covers μ only ~82 % of the time. Every interval here uses
the t quantile at an explicitly stated level:

    two-sided:  x̄ ± t_{(1+level)/2, n−1} · SE        one-sided:  x̄ − t_{level, n−1} · SE
    SE = s / √n,   s² = Σ (x_i − x̄)² / (n − 1)

"a significantly greater than b" means, throughout the project, a one-sided t test at level
0.95 (5 % false-positive rate): the one-sided lower confidence limit of a − b is above 0.
Paired data (two conditions on the same seeds) are tested as pairs, d_i = a_i − b_i, so the
variation shared by a seed's two numbers cancels.

Trials of one episode are not independent (they share the task and the agent's state), so an
SE that treats them as independent is too small. cluster_bootstrap resamples whole episodes.

The t distribution's cdf comes from the regularised incomplete beta function, belief.betainc.
"""
import math

import numpy as np

from belief import betainc

LEVEL = 0.95   # the confidence level of every interval and test of the project (report, panel)
QUANTILE_TOL = 1e-12       # t quantiles are bisected until the bracket is this narrow (relative)
BOOTSTRAP_BLOCK = 2 ** 22  # values resampled per NumPy call (32 MB of float64): bounds memory


# ----------------------------------------------------------------------------- Student's t

def t_cdf(x, df):
    """P(T ≤ x) for Student's t with ν = df ≥ 1 degrees of freedom (ν may be fractional):

        F(t) = 1 − ½ I_{ν/(ν+t²)}(ν/2, ½)   for t ≥ 0,      F(−t) = 1 − F(t),

    with I_x(a, b) the regularised incomplete beta function (belief.betainc)."""
    check_df(df)
    tail = t_upper_tail(abs(x), df)
    return 1.0 - tail if x >= 0 else tail


def t_upper_tail(t, df):
    """P(T > t) = ½ I_{ν/(ν+t²)}(ν/2, ½) for t ≥ 0; computed directly, not as 1 − F(t), so
    that small tail probabilities keep their relative accuracy."""
    return 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p, df):
    """The t with P(T ≤ t) = p, for 0 < p < 1 and ν = df ≥ 1, by bisection on the upper tail
    until the bracket is narrower than QUANTILE_TOL · max(1, t): F is increasing, so the
    bracket always holds the root, and ~50 halvings reach 1e-12. t_{1−p} = −t_p by symmetry."""
    check_df(df)
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, got p={p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    tail = 1.0 - p
    lo, hi = 0.0, 1.0
    while t_upper_tail(hi, df) > tail:  # grow the bracket: t_{0.9995, 1} is already 637
        lo, hi = hi, 2.0 * hi
    while hi - lo > QUANTILE_TOL * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_upper_tail(mid, df) > tail else (lo, mid)
    return 0.5 * (lo + hi)


def check_df(df):
    if not df >= 1:  # also refuses nan
        raise ValueError(f"Student's t needs df ≥ 1 degrees of freedom (at least 2 values), "
                         f"got df={df}")


def check_level(level):
    if not 0.0 < level < 1.0:
        raise ValueError(f"a confidence level is in (0, 1), e.g. 0.95; got {level}")


# ----------------------------------------------------------------------------- intervals

def mean_ci(values, level=LEVEL):
    """Mean of a sample and its two-sided t interval at `level` (default 0.95):

        SE = s / √n (s with n − 1),   df = n − 1,   t = t_{(1+level)/2, df},
        lower, upper = x̄ ∓ t · SE.

    Returns {"mean", "stderr", "n", "df", "level", "t", "lower", "upper"}; all but mean, n and
    level are None when n < 2 (no spread can be estimated from one value)."""
    check_level(level)
    x = as_sample(values)
    n = x.size
    summary = {"mean": float(x.mean()), "stderr": None, "n": n, "df": None, "level": level,
               "t": None, "lower": None, "upper": None}
    if n < 2:
        return summary
    se = float(x.std(ddof=1) / math.sqrt(n))
    t = t_quantile((1.0 + level) / 2.0, n - 1)
    return {**summary, "stderr": se, "df": n - 1, "t": t,
            "lower": summary["mean"] - t * se, "upper": summary["mean"] + t * se}


def lower_confidence_limit(values, level=LEVEL):
    """One-sided lower limit x̄ − t_{level, n−1} · SE (default level 0.95): μ lies above it
    with probability `level`. None for n < 2."""
    check_level(level)
    x = as_sample(values)
    if x.size < 2:
        return None
    return float(x.mean() - t_quantile(level, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def upper_confidence_limit(values, level=LEVEL):
    """One-sided upper limit x̄ + t_{level, n−1} · SE (default level 0.95): μ lies below it
    with probability `level`. None for n < 2."""
    lower = lower_confidence_limit(-as_sample(values), level)
    return None if lower is None else -lower


def paired_difference(a, b, level=LEVEL):
    """One-sided paired t test of "a is greater than b" at `level` (default 0.95, i.e. a 5 %
    false-positive rate), on d_i = a_i − b_i (a_i and b_i measured on the same seed i):

        lower_one_sided = d̄ − t_{level, n−1} · SE(d),   greater = lower_one_sided > 0,
        p_greater = P(T_{n−1} ≥ d̄ / SE(d))   (the one-sided p-value).

    Returns mean_ci(d, level) (its lower/upper are the two-sided interval at `level`) plus
    those three keys; they are None when n < 2."""
    a, b = as_sample(a), as_sample(b)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need one b per a, got {a.size} and {b.size} values")
    return with_one_sided_test(mean_ci(a - b, level))


def welch_difference(a, b, level=LEVEL):
    """One-sided Welch t test of "mean(a) > mean(b)" for two independent samples, at `level`
    (default 0.95), with the Welch–Satterthwaite degrees of freedom:

        d̄ = ā − b̄,   SE² = s_a²/n_a + s_b²/n_b,
        df = SE⁴ / [(s_a²/n_a)² / (n_a − 1) + (s_b²/n_b)² / (n_b − 1)].

    For unpaired data only; when a and b come from the same seeds, paired_difference is the
    test (the shared seed-to-seed variation inflates this SE). Same keys as paired_difference;
    None where either sample has fewer than 2 values."""
    check_level(level)
    a, b = as_sample(a), as_sample(b)
    summary = {"mean": float(a.mean() - b.mean()), "stderr": None, "n": (a.size, b.size),
               "df": None, "level": level, "t": None, "lower": None, "upper": None}
    if min(a.size, b.size) < 2:
        return with_one_sided_test(summary)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(math.sqrt(va + vb))
    # Satterthwaite's df lies in [min(n_a, n_b) − 1, n_a + n_b − 2]; with no spread at all
    # it is 0/0, and any df gives the same (zero-width) interval
    df = ((va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)) if se > 0
          else a.size + b.size - 2)
    t = t_quantile((1.0 + level) / 2.0, df)
    return with_one_sided_test({**summary, "stderr": se, "df": float(df), "t": t,
                                "lower": summary["mean"] - t * se,
                                "upper": summary["mean"] + t * se})


def with_one_sided_test(summary):
    """summary (of a difference d) plus lower_one_sided, greater and p_greater at its level."""
    if summary["stderr"] is None:
        return {**summary, "lower_one_sided": None, "greater": None, "p_greater": None}
    d, se, df = summary["mean"], summary["stderr"], summary["df"]
    lower = d - t_quantile(summary["level"], df) * se
    if se == 0:
        p = 0.0 if d > 0 else 1.0
    else:   # P(T ≥ d/se): the upper tail directly, so that a small p keeps its digits
        x = d / se
        p = t_upper_tail(x, df) if x >= 0 else 1.0 - t_upper_tail(-x, df)
    return {**summary, "lower_one_sided": float(lower), "greater": bool(lower > 0),
            "p_greater": float(p)}


def as_sample(values):
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"a sample needs at least one value, all finite; got {x.size} values "
                         f"of which {int(np.sum(~np.isfinite(x)))} non-finite")
    return x


# ----------------------------------------------------------------------------- bootstrap

def cluster_bootstrap(statistic, clusters, rng, n_boot=1000):
    """Bootstrap a statistic of clustered data by resampling whole clusters with replacement.

    Replicate k draws C cluster indices j_k = (j_{k,1}, …, j_{k,C}) uniformly with replacement
    and evaluates the statistic on clusters[j_k]; its SE is the sd of the replicates (n − 1).
    Dependence inside a cluster (the trials of one episode) is kept, dependence between
    clusters is assumed away, so the SE is right when episodes are independent and trials not.

    Parameters
    ----------
    statistic : callable mapping a batch of resampled data (m, C, ...) to (m,) or (m, k)
        replicates, e.g. lambda x: x[..., 1].sum(1) / x[..., 0].sum(1) for per-episode
        (trials, successes). Batched so that one NumPy call serves m replicates.
    clusters : (C, ...) array, one row per cluster: a list of equal-length per-episode arrays
        stacks into it; per-episode sufficient statistics (counts) make it fast. For ragged
        clusters pass np.arange(C) and let the statistic look its data up by episode index.
    rng : np.random.Generator, the only source of the resampling.
    n_boot : number of replicates (≥ 2).

    Returns {"estimate": statistic on the data as observed, "replicates": (n_boot, ...),
             "se": sd of the replicates (nan where replicates are not finite)}.
    """
    x = np.asarray(clusters)
    C = x.shape[0]
    if C < 2 or n_boot < 2:
        raise ValueError(f"a cluster bootstrap needs ≥ 2 clusters and ≥ 2 replicates, got "
                         f"{C} clusters and n_boot={n_boot}")
    estimate = np.asarray(statistic(x[None]))[0]
    j = rng.integers(C, size=(n_boot, C))  # (n_boot, C) resampled cluster indices
    m = max(1, BOOTSTRAP_BLOCK // x.size)  # replicates per call
    replicates = np.concatenate([np.asarray(statistic(x[j[k:k + m]])) for k in range(0, n_boot, m)])
    with np.errstate(invalid="ignore"):  # inf − inf in a non-finite replicate: se is nan
        se = replicates.std(axis=0, ddof=1)
    return {"estimate": estimate, "replicates": replicates, "se": se}
