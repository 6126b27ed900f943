"""Ridge regression between time-major arrays, cross-validated over whole episodes.

The array-level core of the probes (probe.py) and of the maps between machines
(machines.py): both directions of a linear probe use one ridge regression,

    decode:  b ≈ h W + c        (X = h, Y = b)
    encode:  h ≈ b W + c        (X = b, Y = h)

fitted in closed form and scored by held-out R² under K-fold cross-validation over *episodes*:
steps of one episode are strongly correlated, so splitting steps would leak an episode's
answers into its own test set.

Conventions
-----------
* Rollouts are time-major (T, B, ·). ``flatten_episodes`` turns them into rows (T*B, ·) in
  time-major order, row n = t*B + b, with ``groups[n] = b`` the episode id.
* Features are standardised on the training fold, x_s = (x - mu) / sd (sd = 1 for constant
  columns); targets are centred on the training fold, y_c = y - y_mean (the intercept).
* The ridge penalty is N-scaled: minimise (1/N) ||Yc - Xs W||² + λ ||W||², so λ is measured
  against unit feature variance and the grid ``LAMBDAS`` = 1e-4 … 1e4 means the same thing for
  any N.
* R² = 1 - SSE / SST per target column, SST about the held-out targets' own mean.
"""
from dataclasses import dataclass

import numpy as np

from boundary import check_int

LAMBDAS = np.logspace(-4, 4, 17)  # N-scaled λ grid, half a decade apart
CONSTANT_SD = 1e-12  # sd below this (relative to 1 + |mu|) marks a column constant: rounding noise


# ----------------------------------------------------------------------------- episodes


def flatten_episodes(A):
    """(T, B, ...) → rows (T*B, F) in time-major order, and episode ids groups (T*B,).

    Row n = t*B + b holds A[t, b]; groups[n] = b. A (T, B) array becomes (T*B, 1).
    """
    A = np.asarray(A)
    if A.ndim < 2:
        raise ValueError(f"expected a time-major (T, B, ...) array, got shape {A.shape}")
    T, B = A.shape[:2]
    return A.reshape(T * B, -1), np.tile(np.arange(B), T)


def unflatten_episodes(A, B):
    """Inverse of ``flatten_episodes``: rows (T*B, ...) → (T, B, ...)."""
    A = np.asarray(A)
    return A.reshape(-1, B, *A.shape[1:])


def episode_folds(groups, k, rng):
    """Assign whole episodes to k folds: fold (N,) ints in [0, k).

    Episodes are shuffled and dealt round-robin, so fold sizes differ by at most one episode
    and every row of an episode lands in the same fold.
    """
    groups = _check_groups(groups)
    _check_k(k)
    ids, episode_of_row = np.unique(groups, return_inverse=True)
    if len(ids) < k:
        raise ValueError(f"k={k} folds need at least {k} episodes, got {len(ids)}")
    fold_of_episode = np.empty(len(ids), dtype=int)
    fold_of_episode[rng.permutation(len(ids))] = np.arange(len(ids)) % k
    return fold_of_episode[episode_of_row]


def shuffle_targets_across_episodes(Y, groups, rng):
    """Control: give every episode the whole target sequence of another episode.

    Rows of one episode are taken in their order of appearance (time order under
    ``flatten_episodes``), so the time structure common to all episodes survives and only the
    link between an episode's features and its own targets is broken. The permutation is a
    random cycle over episodes, so no episode keeps its own targets. Needs equal episode lengths.
    """
    Y = np.asarray(Y)
    groups = _check_groups(groups)
    if len(Y) != len(groups):
        raise ValueError(f"Y has {len(Y)} rows but groups has {len(groups)}: need the same N")
    ids, T = np.unique(groups, return_counts=True)
    if T.min() != T.max():
        raise ValueError(f"shuffling needs equal episode lengths, got lengths {T.min()}..{T.max()}")
    if len(ids) < 2:
        raise ValueError(f"shuffling needs at least 2 episodes, got {len(ids)}")
    rows = np.argsort(groups, kind="stable").reshape(len(ids), T[0])  # (G, T), time order kept
    perm = rng.permutation(len(ids))
    src = np.roll(perm, 1)  # episode perm[i] receives episode perm[i-1]: one cycle, no fixed point
    Y_shuffled = np.empty_like(Y)
    Y_shuffled[rows[perm]] = Y[rows[src]]
    return Y_shuffled


# ----------------------------------------------------------------------------- ridge


@dataclass(frozen=True)
class RidgeFit:
    """A fitted ridge probe: Ŷ = ((X - mu) / sd) W + y_mean."""

    mu: np.ndarray      # (D,) training-fold feature means
    sd: np.ndarray      # (D,) training-fold feature stds (1 for constant columns)
    W: np.ndarray       # (D, M) weights on standardised features
    y_mean: np.ndarray  # (M,) training-fold target means (the intercept)
    lam: float          # N-scaled ridge strength λ (or (M,), one per target column)


def ridge_fit(X, Y, lam):
    """Ridge regression in closed form, checked inputs. See ``ridge_path`` for the equation."""
    X, Y = _check_xy(X, Y)
    lam = _check_lambdas([lam])[0]
    return _ridge_path(X, Y, [lam])[0]


def ridge_path(X, Y, lambdas):
    """Ridge fits for every λ from one eigendecomposition of the Gram matrix.

    With Xs = (X - mu) / sd and Yc = Y - y_mean on these N rows, and Xsᵀ Xs = V diag(e) Vᵀ,

        W_λ = (Xsᵀ Xs + N λ I)⁻¹ Xsᵀ Yc = V diag(1 / (e + N λ)) Vᵀ Xsᵀ Yc.

    The matrix is positive definite for λ > 0 even when features are collinear (LSTM units
    often are), and one decomposition serves the whole λ grid. Returns (mu (D,), sd (D,),
    y_mean (M,), W (L, D, M)); Ŷ = ((X − mu) / sd) W_λ + y_mean."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    N = len(X)
    mu = X.mean(0)
    Xc = X - mu
    sd = np.sqrt((Xc * Xc).sum(0) / N)              # X.std(0), reusing X − mu
    sd[sd < CONSTANT_SD * (1 + np.abs(mu))] = 1.0  # a constant column standardises to 0, not NaN
    Xs = Xc / sd                                    # (N, D)
    y_mean = Y.mean(0)
    e, V = np.linalg.eigh(Xs.T @ Xs)
    Z = V.T @ (Xs.T @ (Y - y_mean))                 # (D, M), in the eigenbasis
    e = np.maximum(e, 0.0)                          # rounding can leave e ≈ −1e-13
    W = np.stack([V @ (Z / (e + N * lam)[:, None]) for lam in lambdas])   # (L, D, M)
    return mu, sd, y_mean, W


def _ridge_path(X, Y, lambdas):
    """ridge_path as RidgeFit records, one per λ."""
    mu, sd, y_mean, W = ridge_path(X, Y, lambdas)
    return [RidgeFit(mu=mu, sd=sd, W=w, y_mean=y_mean, lam=float(lam)) for w, lam in zip(W, lambdas)]


def ridge_predict(fit, X):
    """Ŷ = ((X - mu) / sd) W + y_mean, (N, M)."""
    return ((np.asarray(X, dtype=float) - fit.mu) / fit.sd) @ fit.W + fit.y_mean


def ridge_coefficients(fit):
    """The same probe in the original units: Ŷ = X A + c, A = W / sd, c = y_mean - mu A."""
    A = fit.W / fit.sd[:, None]  # (D, M)
    return A, fit.y_mean - fit.mu @ A


# ----------------------------------------------------------------------------- cross-validation


def r2_score(Y, Yhat):
    """Per-column R² = 1 - Σ(y - ŷ)² / Σ(y - ȳ)², ȳ the mean of these Y; NaN where SST = 0."""
    Y, Yhat = np.asarray(Y, dtype=float), np.asarray(Yhat, dtype=float)
    if Y.shape != Yhat.shape:
        raise ValueError(f"Y has shape {Y.shape} but Yhat has shape {Yhat.shape}")
    sse = ((Y - Yhat) ** 2).sum(0)
    sst = ((Y - Y.mean(0)) ** 2).sum(0)
    return 1.0 - np.divide(sse, sst, out=np.full_like(sse, np.nan), where=sst > 0)


@dataclass(frozen=True)
class CVResult:
    """Held-out scores of a ridge probe under K-fold cross-validation over episodes."""

    r2: np.ndarray        # (M,) R² of the pooled held-out predictions
    r2_fold: np.ndarray   # (k, M) R² within each held-out fold
    r2_sd: np.ndarray     # (M,) std over folds of r2_fold (ddof=1): the error bar
    lam: np.ndarray       # (k,) λ chosen by the inner CV for each outer fold
    Yhat: np.ndarray      # (N, M) held-out predictions, each row from the fold that left it out
    folds: np.ndarray     # (N,) outer fold of each row


def cross_validated_r2(X, Y, groups, *, rng, k=5, lambdas=LAMBDAS, k_inner=None, folds=None):
    """Nested K-fold CV over episodes of the ridge probe Y ≈ X W + c.

    Outer loop: for each fold f, fit on the other folds and predict fold f. Inner loop (on the
    outer training episodes only): k_inner-fold CV over the same episodes picks the λ in
    ``lambdas`` with the best mean held-out R² over target columns. A single λ skips the inner
    loop. k_inner defaults to k. `folds` (N,), the outer fold of each row (episode_folds), may
    be given so that two probes are scored on the same splits (a paired comparison); with the
    same rng state they then also share the inner splits.
    """
    X, Y = _check_xy(X, Y)
    groups = _check_groups(groups, n=len(X))
    lambdas = _check_lambdas(lambdas)
    k_inner = k if k_inner is None else k_inner
    _check_k(k)
    _check_k(k_inner, name="k_inner")
    _check_enough_episodes(groups, k, k_inner if len(lambdas) > 1 else None)

    fold = episode_folds(groups, k, rng) if folds is None else _check_folds(folds, groups, k)
    Yhat = np.empty_like(Y)             # (N, M)
    r2_fold = np.empty((k, Y.shape[1]))  # (k, M)
    lam = np.empty(k)
    for f in range(k):
        test, train = fold == f, fold != f
        lam[f] = lambdas[0] if len(lambdas) == 1 else _select_lambda(
            X[train], Y[train], groups[train], lambdas, k_inner, rng)
        fit = _ridge_path(X[train], Y[train], [lam[f]])[0]
        Yhat[test] = ridge_predict(fit, X[test])
        r2_fold[f] = r2_score(Y[test], Yhat[test])
    return CVResult(r2=r2_score(Y, Yhat), r2_fold=r2_fold, r2_sd=r2_fold.std(0, ddof=1),
                    lam=lam, Yhat=Yhat, folds=fold)


def ridge_select_and_fit(X, Y, groups, *, rng, k=5, lambdas=LAMBDAS):
    """One ridge probe fitted on all rows, λ chosen by k-fold CV over episodes: the probe to
    apply, unchanged, to other data."""
    X, Y = _check_xy(X, Y)
    groups = _check_groups(groups, n=len(X))
    _check_enough_episodes(groups, k, None)
    lam = _select_lambda(X, Y, groups, _check_lambdas(lambdas), k, rng)
    return _ridge_path(X, Y, [lam])[0]


def _select_lambda(X, Y, groups, lambdas, k, rng):
    """The λ maximising the mean (over columns with SST > 0) pooled held-out R² of a k-fold CV."""
    sse = held_out_sse_path(X, Y, episode_folds(groups, k, rng), lambdas)
    sst = ((Y - Y.mean(0)) ** 2).sum(0)
    varying = sst > 0
    score = (1.0 - sse[:, varying] / sst[varying]).mean(1) if varying.any() else np.zeros(len(sse))
    return lambdas[int(np.argmax(score))]


def held_out_sse_path(X, Y, fold, lambdas):
    """(L, M) held-out SSE of each ridge fit of the path, per target column, pooled over the
    folds: each fold f (rows with fold == f) predicted by the ridge_path fitted on the others."""
    sse = np.zeros((len(lambdas), Y.shape[1]))  # SSE, not predictions, to stay O(L·M)
    for f in np.unique(fold):
        test = fold == f
        mu, sd, y_mean, W = ridge_path(X[~test], Y[~test], lambdas)
        Xs, Y_test = (X[test] - mu) / sd, Y[test]   # standardised once for the whole path
        for l in range(len(lambdas)):               # (n_test, M) temporaries, not L of them
            sse[l] += ((Y_test - (Xs @ W[l] + y_mean)) ** 2).sum(0)
    return sse


def decode(h, b, groups, *, rng, k=5, lambdas=LAMBDAS, folds=None):
    """Hidden → belief: cross-validated R² of b ≈ h W + c, one R² per belief feature."""
    return cross_validated_r2(h, b, groups, rng=rng, k=k, lambdas=lambdas, folds=folds)


@dataclass(frozen=True)
class EncodeResult:
    """Belief → hidden: how much of each (non-constant) hidden unit the belief explains."""

    r2_mean: float      # plain mean over kept units of the pooled held-out R²
    r2_mean_sd: float   # std over folds of the per-fold mean R² over kept units
    keep: np.ndarray    # (H,) bool, units with sd ≥ min_sd
    cv: CVResult        # per-unit results for the kept units


def encode(b, h, groups, *, rng, k=5, lambdas=LAMBDAS, min_sd=1e-3):
    """Belief → hidden: cross-validated R² of h ≈ b W + c, averaged over hidden units.

    Units with sd < min_sd over all rows (saturated or dead; h ∈ [-1, 1] so the threshold is
    absolute) have no variance to explain and are dropped before fitting. The summary is the
    plain mean over kept units, so every unit counts once whatever its variance.
    """
    h = np.asarray(h, dtype=float)
    if h.ndim != 2:
        raise ValueError(f"h must be 2-D (N, H), got shape {h.shape}")
    keep = h.std(0) >= min_sd
    if not keep.any():
        raise ValueError(f"all {h.shape[1]} hidden units are near-constant (sd < {min_sd})")
    cv = cross_validated_r2(b, h[:, keep], groups, rng=rng, k=k, lambdas=lambdas)
    return EncodeResult(r2_mean=float(cv.r2.mean()), r2_mean_sd=float(cv.r2_fold.mean(1).std(ddof=1)),
                        keep=keep, cv=cv)


# ----------------------------------------------------------------------------- input checks


def _check_xy(X, Y):
    X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
    for name, A in (("X", X), ("Y", Y)):
        if A.ndim != 2:
            raise ValueError(f"{name} must be 2-D (N, ·), got shape {A.shape}")
        if not np.isfinite(A).all():
            raise ValueError(f"{name} contains {np.size(A) - np.isfinite(A).sum()} NaN/inf entries")
    if len(X) != len(Y):
        raise ValueError(f"X has shape {X.shape} but Y has shape {Y.shape}: need the same N rows")
    return X, Y


def _check_groups(groups, n=None):
    groups = np.asarray(groups)
    if groups.ndim != 1 or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(f"groups must be a 1-D integer array, got {groups.dtype} {groups.shape}")
    if n is not None and len(groups) != n:
        raise ValueError(f"groups has shape {groups.shape} but X has {n} rows")
    return groups


def _check_folds(folds, groups, k):
    """folds (N,): integers in [0, k), one fold per episode, every fold used."""
    folds = np.asarray(folds)
    if folds.shape != groups.shape or not np.issubdtype(folds.dtype, np.integer):
        raise ValueError(f"folds must be {groups.shape} integers, got {folds.dtype} {folds.shape}")
    if set(np.unique(folds)) != set(range(k)):
        raise ValueError(f"folds must use each of the {k} folds 0..{k - 1}")
    pairs = np.unique(np.stack([groups, folds]), axis=1)
    if pairs.shape[1] != len(np.unique(groups)):
        raise ValueError("folds must put every row of an episode in the same fold")
    return folds


def _check_k(k, name="k"):
    check_int(name, k, 2)


def _check_lambdas(lambdas):
    lambdas = np.asarray(lambdas, dtype=float).ravel()
    if len(lambdas) == 0 or not (lambdas > 0).all() or not np.isfinite(lambdas).all():
        raise ValueError(f"ridge strengths λ must be finite and > 0, got {lambdas}")
    return lambdas


def _check_enough_episodes(groups, k, k_inner):
    """Each outer training set (≥ ⌊G (k-1) / k⌋ episodes) must hold k_inner folds."""
    G = len(np.unique(groups))
    need = k if k_inner is None else max(k, -(-k * k_inner // (k - 1)))  # ceil(k k_inner / (k-1))
    if G < need:
        inner = "" if k_inner is None else f" × {k_inner} inner"
        raise ValueError(f"k={k} outer{inner} folds need at least {need} episodes, got {G}")
