"""The probe of a trained agent: is its hidden state a belief state?

The claim under test: the LSTM's hidden state is a belief state, i.e. the posterior features
b_t (posterior means, variances, P(tiger left), ...) are a linear read-out of h_t, and h_t is in
turn largely a linear function of b_t (ridge.py: decode and encode, cross-validated over
episodes), beside controls on the same episodes and folds; then the tests beyond decoding
(machines.analyse); and from the command line (--ladders), the agent's position on each
property's ladder of machines whose answer is known (ladders.py).
Here: the agent's probe, behaviour metrics, PCA, plots and the command line.
"""
import json
import os
import sys

import numpy as np

import belief
import kernels
import ladders
import machines
import metarl
import ridge
import runs
from boundary import (OneLineErrorParser, check_int, check_memory, check_output_folder,
                      new_figure, run_cli, save_png, to_builtin, write_files_together)

# ----------------------------------------------------------------------------- PCA


def principal_components(X, n=2):
    """Scores Z (N, n), directions V (n, D) and explained-variance ratios (n,) of X.

    Xc = X - mean = U S Vᵀ; Z = U S; ratio_i = S_i² / Σ S². Each direction's sign is fixed so
    its largest-magnitude loading is positive, making plots reproducible.
    """
    X = np.asarray(X, dtype=float)
    U, S, Vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    sign = np.sign(Vt[np.arange(len(Vt)), np.abs(Vt).argmax(1)])  # (min(N, D),)
    Z = U[:, :n] * S[:n] * sign[:n]
    return Z, Vt[:n] * sign[:n, None], S[:n] ** 2 / (S**2).sum()


# ----------------------------------------------------------------------------- plots


def decoded_scatter_plot(b, b_hat, path, label="posterior mean"):
    """Held-out decoded vs exact belief feature (N,), with the identity line."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.scatter(b, b_hat, s=3, alpha=0.3)
    lo, hi = min(np.min(b), np.min(b_hat)), max(np.max(b), np.max(b_hat))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="decoded = exact")
    ax.set(xlabel=f"exact {label}", ylabel=f"decoded {label} (held out)",
           title=f"Decoding {label} from [h, c]: R² = {ridge.r2_score(b, b_hat):.3f}")
    ax.legend()
    save_png(fig, path, dpi=120)


def r2_bar_plot(features, r2, r2_sd, path):
    """What each probe misses, 1 − held-out R², per feature for each condition (trained and
    controls), on a log axis: R² near 1 for trained and untrained alike would hide the gap.

    r2, r2_sd: dicts condition → (M,) arrays, plotted side by side in dict order; error bars
    are the std over folds, shortened where they would reach below 1e-4 (the log axis cannot
    show ≤ 0; the bars are symmetric, so the upper one is shortened alike)."""
    fig, axes = new_figure(width=6.0)
    ax = axes[0, 0]
    x = np.arange(len(features))
    width = 0.8 / len(r2)
    for i, condition in enumerate(r2):
        miss = np.maximum(1.0 - np.asarray(r2[condition]), 1e-4)
        ax.bar(x + (i - (len(r2) - 1) / 2) * width, miss, width,
               yerr=np.minimum(r2_sd[condition], miss - 1e-4 * 0.999), capsize=2, label=condition)
    ax.set_xticks(x, [f.replace("_", " ") for f in features], rotation=30, ha="right")
    ax.set(yscale="log", xlabel="belief feature", ylabel="1 − held-out R² (log)",
           title="What a linear probe misses of the belief")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, fontsize="small")
    save_png(fig, path, dpi=120)


def pca_plot(h, c, path, label="belief"):
    """First two principal components of h (N, H), points coloured by a belief value c (N,)."""
    Z, _, ratio = principal_components(h, 2)
    fig, axes = new_figure()
    ax = axes[0, 0]
    points = ax.scatter(Z[:, 0], Z[:, 1], c=c, s=3, cmap="viridis")
    fig.colorbar(points, ax=ax, label=label)
    ax.set(xlabel=f"PC1 ({100 * ratio[0]:.0f}% var)", ylabel=f"PC2 ({100 * ratio[1]:.0f}% var)",
           title=f"Hidden state h, coloured by {label}")
    save_png(fig, path, dpi=120)


def belief_trajectory_plot(b, b_hat, path, label="posterior mean"):
    """One episode's belief feature over time (T,), exact vs decoded."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    t = np.arange(len(b))
    ax.plot(t, b, "k-", label="exact (Bayes)")
    ax.plot(t, b_hat, "C1--", label="decoded from [h, c] (held out)")
    ax.set(xlabel="time step t", ylabel=label, title=f"One episode: exact vs decoded {label}")
    ax.legend()
    save_png(fig, path, dpi=120)


# ----------------------------------------------------------------------------- the agent's probe
PROBE_STREAM = 2 ** 33  # rollouts for the probe use stream(seed, PROBE_STREAM): fresh episodes
FOLDS = 5


SIMULATION_EPISODES = 500   # episodes of the simulation and minimality analyses (MLP maps)
SPLICE_EPISODES = 500       # fresh episodes of the splicing test
LADDER_SEEDS = 2            # seeds of the ladders beside the agent (--ladders), as in the main job


def probe_agent(params, hp, episodes, seed, k=FOLDS, simulation_episodes=SIMULATION_EPISODES,
                splice_episodes=SPLICE_EPISODES, controls=None, map_steps=machines.MLP_STEPS):
    """The paper's measurement on a trained agent, on `episodes` fresh episodes.

    Decode the exact belief (belief.belief_features, the belief before each action) from the
    state that chose the action, h_{t+1}, c_{t+1} or [h, c]; encode [h, c] from the belief;
    and the controls, each on the same episodes:
      untrained   the same architecture with its initial (untrained) weights, driven by the
                  trained agent's own input histories (its actions replayed);
      memoryless  a probe from the current input x_t alone;
      shuffled    [h, c] against targets shuffled across episodes;
      and each network of `controls` {name: params} (same inputs and actions, e.g. the
      Bayes-distilled LSTM of metarl.py distill, a known belief state), driven like the
      untrained one by the agent's input histories, and measured in every test beside it:
      behaviour on its own episodes (same tasks and noise), splicing and value loss too.
    Every probe uses the same outer folds and the same inner splits (a fresh generator of
    `seed` each), so trained and untrained are compared fold by fold: their gap per feature
    comes with the fold-paired SE, sd over folds of the per-fold gap / √k.
    Behaviour: KL(Bayes-optimal (ties split evenly) ‖ agent) and the agreement rate of the
    agent's most likely action with the Bayes-optimal (or belief-greedy) actions.
    Beyond decoding (machines.analyse): state-machine simulation both ways and minimality,
    trained against untrained on the first of these episodes; state splicing (fresh
    episodes) and where the agent loses value, for the trained agent.
    Returns (summary dict for JSON, arrays for plots)."""
    cfg = metarl.env_config(hp)
    machines.check_sizes(cfg, episodes, k)    # what a later step would refuse, refused now
    machines.check_sizes(cfg, simulation_episodes, k, ("simulation_episodes", "k"))
    check_int("splice_episodes", splice_episodes, 2)
    check_int("seed", seed, 0)
    tr = metarl.rollout(params, cfg, episodes, metarl.stream(seed, PROBE_STREAM))
    F, names = belief.belief_features(cfg, tr.a, tr.r, tr.obs)          # (T, B, n_f)
    Y, groups = ridge.flatten_episodes(F)
    states = {"h": tr.h[1:], "c": tr.c[1:], "[h, c]": np.concatenate([tr.h[1:], tr.c[1:]], -1)}
    folds = ridge.episode_folds(groups, k, np.random.default_rng(seed))

    def paired_decode(X, targets=Y):
        return ridge.decode(X, targets, groups, rng=np.random.default_rng(seed), k=k, folds=folds)

    decoded = {name: paired_decode(ridge.flatten_episodes(X)[0]) for name, X in states.items()}
    hc = ridge.flatten_episodes(states["[h, c]"])[0]
    initial = metarl.initial_params(hp, cfg)
    # the same stream gives the same tasks and noise, and the actions are replayed: the
    # untrained network sees exactly the trained agent's input histories
    untrained = metarl.rollout(initial, cfg, episodes, metarl.stream(seed, PROBE_STREAM),
                               actions=tr.a)
    shuffled = ridge.shuffle_targets_across_episodes(Y, groups, np.random.default_rng(seed))
    networks = {} if controls is None else controls
    driven = {name: metarl.rollout(net, cfg, episodes, metarl.stream(seed, PROBE_STREAM),
                                   actions=tr.a) for name, net in networks.items()}
    own = {name: metarl.rollout(net, cfg, episodes, metarl.stream(seed, PROBE_STREAM))
           for name, net in networks.items()}   # the same tasks and noise, its own actions
    controls = {
        "untrained": paired_decode(
            ridge.flatten_episodes(np.concatenate([untrained.h[1:], untrained.c[1:]], -1))[0]),
        "memoryless": paired_decode(ridge.flatten_episodes(tr.x)[0]),
        "shuffled": paired_decode(hc, shuffled),
        **{name: paired_decode(ridge.flatten_episodes(np.concatenate([d.h[1:], d.c[1:]], -1))[0])
           for name, d in driven.items()},
    }
    gap_fold = decoded["[h, c]"].r2_fold - controls["untrained"].r2_fold   # (k, n_f)
    enc = ridge.encode(Y, hc, groups, rng=np.random.default_rng(seed), k=k)
    acts = behaviour(cfg, tr)
    main = decoded["[h, c]"]
    summary = {
        "env": cfg.name, "horizon": cfg.horizon, "episodes": episodes, "seed": seed, "folds": k,
        "features": list(names),
        "decode": dict(zip(names, map(float, main.r2))),
        "decode_sd": dict(zip(names, map(float, main.r2_sd))),
        "decode_mean_r2": float(main.r2.mean()),
        "decode_by_state": {s: dict(zip(names, map(float, d.r2))) for s, d in decoded.items()},
        "decode_by_state_sd": {s: dict(zip(names, map(float, d.r2_sd))) for s, d in decoded.items()},
        "encode_r2": enc.r2_mean, "encode_r2_sd": enc.r2_mean_sd,
        "controls": {c: float(d.r2.mean()) for c, d in controls.items()},
        "controls_by_feature": {c: dict(zip(names, map(float, d.r2))) for c, d in controls.items()},
        "controls_sd": {c: dict(zip(names, map(float, d.r2_sd))) for c, d in controls.items()},
        "untrained_gap": dict(zip(names, map(float, main.r2 - controls["untrained"].r2))),
        "untrained_gap_se": dict(zip(names, map(float, gap_fold.std(0, ddof=1) / np.sqrt(k)))),
        "policy_kl": acts["policy_kl"], "agreement": acts["agreement"],
    }
    if networks:
        summary["behaviour_by_network"] = {name: behaviour(cfg, run) for name, run in own.items()}
    tests = machines.analyse(params, hp, tr, seed, k, simulation_episodes, splice_episodes,
                             {name: (net, own[name]) for name, net in networks.items()},
                             map_steps)
    summary.update(tests, value_loss_per_step=tests["value_loss"]["value_loss_per_step"],
                   value_loss_per_step_se=tests["value_loss"]["value_loss_per_step_se"])
    arrays = {"Y": Y, "names": names, "main": main, "controls": controls, "h": tr.h[1:],
              "T": cfg.horizon, "B": episodes}
    return summary, arrays


def on_the_ladders(params, hp, seeds, episodes, seed, k=FOLDS, log=None,
                   map_steps=machines.MLP_STEPS):
    """The agent's profile on its family's ladders (ladders.profile): every ladder built on
    seeds seed … seed + seeds − 1 (ladders.build_ladders, without the agent's basis, whose
    LSTMs take minutes each to distil), each reading along the agent's own first
    min(SIMULATION_EPISODES, episodes) episodes of the probe's stream at that seed, and the
    agent measured on the same episodes (ladders.place_machine): its interval counts those
    seeds. `log` gets a line per ladder and basis (they take minutes)."""
    cfg, n = metarl.env_config(hp), min(SIMULATION_EPISODES, episodes)

    def along(s):
        return metarl.rollout(params, cfg, n, metarl.stream(s, PROBE_STREAM))

    chosen = list(range(seed, seed + seeds))
    built = ladders.build_ladders(hp, chosen, n, SPLICE_EPISODES, k, along=along,
                                  agent_basis=False, log=log, map_steps=map_steps)
    placed = ladders.place_machine(params, hp, built, chosen, k=k, along=along,
                                   map_steps=map_steps)
    return {"seeds": chosen, "episodes": n, "splice_episodes": SPLICE_EPISODES,
            "profile": placed["profile"], "values": placed["values"]}


def behaviour(cfg, tr):
    """{"policy_kl", "agreement", "mean_return"} of a network on its own episodes tr: KL(the
    reference's tie-split policy ‖ π) and the agreement of π's most likely action with the
    reference's best actions, per step."""
    q = belief.reference_q(cfg, tr.a, tr.r, tr.obs).reshape(-1, tr.pi.shape[-1])
    pi = tr.pi.reshape(-1, tr.pi.shape[-1])
    return {"policy_kl": belief.policy_kl(belief.tie_split_policy(q), pi),
            "agreement": belief.agreement_rate(q, pi), "mean_return": float(tr.r.sum(0).mean())}


def write_plots(summary, arrays, folder, shown=None):
    """The probe's figures, as PNGs in `folder`: decoding (scatter, what the probes miss,
    PCA, one episode) and the belief-state tests (simulation, minimality, splicing, value
    loss); returns their paths, in `shown` instead of `folder` if given (the folder they are
    moved to from a staging `folder`)."""
    names, Y, main = arrays["names"], arrays["Y"], arrays["main"]
    first = names[0]
    files = {name: f"{summary['env']}_{name}.png"
             for name in ("decoded_scatter", "r2_bars", "pca", "trajectory", "simulation",
                          "minimality", "splice", "value_loss")}
    paths = {name: os.path.join(folder, file) for name, file in files.items()}
    keep = np.random.default_rng(0).permutation(len(Y))[:20000]   # a readable scatter
    decoded_scatter_plot(Y[keep, 0], main.Yhat[keep, 0], paths["decoded_scatter"], label=first)
    conditions = {"trained [h, c]": main.r2, **{c: d.r2 for c, d in arrays["controls"].items()}}
    spreads = {"trained [h, c]": main.r2_sd, **{c: d.r2_sd for c, d in arrays["controls"].items()}}
    r2_bar_plot(list(names), conditions, spreads, paths["r2_bars"])
    h = arrays["h"].reshape(-1, arrays["h"].shape[-1])
    pca_plot(h[keep], Y[keep, 0], paths["pca"], label=first)
    T, B = arrays["T"], arrays["B"]
    episode = 0  # rows t*B + 0 for t = 0..T-1
    rows = np.arange(T) * B + episode
    belief_trajectory_plot(Y[rows, 0], main.Yhat[rows, 0], paths["trajectory"], label=first)
    machines.plot_simulation({d: summary["simulation"][d] for d in machines.DIRECTION_LABEL},
                             paths["simulation"])
    machines.plot_minimality({net: {"partial_r2": summary["minimality"]["partial_r2"][net],
                                    "within_between_ratio":
                                        summary["minimality"]["within_between_ratio"][net]}
                              for net in summary["minimality"]["partial_r2"]}, paths["minimality"])
    machines.plot_splice(summary["splice"], paths["splice"])
    machines.plot_value_loss(summary["value_loss"], paths["value_loss"])
    return {name: os.path.join(shown or folder, file) for name, file in files.items()}


def main(argv=None):
    parser = OneLineErrorParser(prog="probe.py", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint written by metarl.py train")
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="seed (>= 0) of episodes and folds")
    parser.add_argument("--folds", type=int, default=FOLDS, help="cross-validation folds K >= 2")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", metavar="DIR", help="write the PNG figures into DIR")
    parser.add_argument("--control", metavar="CKPT", help="a checkpoint of the same task "
                        "distribution measured beside the agent in every test, under key "
                        "'distilled' if it was trained by metarl.py distill, else 'control'")
    parser.add_argument("--ladders", action="store_true",
                        help="also place the agent on its family's ladders of known machines "
                        "(ladders.py; minutes): its position on each property with an interval")
    parser.add_argument("--ladder-seeds", type=int, default=LADDER_SEEDS,
                        help=f"seeds of the ladders with --ladders, 2 to 10 (default {LADDER_SEEDS})")
    parser.add_argument("--map-steps", type=int, default=machines.MLP_STEPS,
                        help="Adam steps of each MLP map fit, 1 to 100000 (default "
                             f"{machines.MLP_STEPS}, as the main job): fewer is faster and coarser")
    args = parser.parse_args(argv)

    def command():
        check_int("--folds", args.folds, 2, 100)
        check_int("--episodes", args.episodes, 1)
        check_int("--seed", args.seed, 0)
        check_int("--ladder-seeds", args.ladder_seeds, 2, 10)
        check_int("--map-steps", args.map_steps, 1, 100_000)
        ckpt = runs.load_checkpoint(args.checkpoint)
        cfg = metarl.env_config(ckpt["hp"])
        controls = {}
        if args.control:
            other = runs.load_checkpoint(args.control)
            if metarl.env_config(other["hp"]) != cfg:
                raise ValueError(f"--control {args.control} was trained on other tasks than "
                                 f"{args.checkpoint}")
            name = "distilled" if other["hp"].objective == "distill" else "control"
            controls[name] = other["params"]
        machines.check_sizes(cfg, args.episodes, args.folds, ("--episodes", "--folds"))
        # each control network, and the ladders (one machine at a time), hold about a probe more
        check_memory(probe_bytes(cfg, ckpt["hp"].hidden, args.episodes)
                     * (1 + len(controls) + args.ladders),
                     f"probing {args.episodes} episodes")
        if args.plot:   # checked now, created only when every figure is drawn
            check_output_folder(args.plot, "--plot")
        summary, arrays = probe_agent(ckpt["params"], ckpt["hp"], args.episodes, args.seed,
                                      args.folds, controls=controls, map_steps=args.map_steps)
        if args.ladders:
            summary["ladders"] = on_the_ladders(
                ckpt["params"], ckpt["hp"], args.ladder_seeds, args.episodes, args.seed,
                args.folds, log=lambda line: print(line, file=sys.stderr, flush=True),
                map_steps=args.map_steps)
        if args.plot:
            summary["plots"] = write_files_together(
                args.plot, lambda stage: write_plots(summary, arrays, stage, args.plot))
        if args.json:
            print(json.dumps(to_builtin(summary)))
        else:
            print_summary(summary)

    return run_cli("probe.py", command)


def probe_bytes(cfg, H, episodes):
    """Bytes probe_agent holds at its peak: two rollouts (trained and untrained) and, per
    step, [h, c] with its standardised copies and predictions (≈ 10 copies of 2H numbers)."""
    rows = cfg.horizon * episodes
    return 2 * kernels.rollout_bytes(cfg, episodes, H, np.float64) + rows * 8 * (20 * H + 64)


def print_summary(s):
    """The probe's table: held-out R² ± its sd over folds, per feature, for each state and
    each control."""
    print(f"{s['env']} (T={s['horizon']}), {s['episodes']} episodes, {s['folds']}-fold CV by "
          "episode; held-out R² ± sd over folds")
    cells = {c: (s["decode_by_state"][c], s["decode_by_state_sd"][c]) for c in s["decode_by_state"]}
    cells.update({c: (s["controls_by_feature"][c], s["controls_sd"][c]) for c in s["controls"]})
    print(f"{'feature':10s}" + "".join(f"{c:>16s}" for c in cells))
    for f in s["features"]:
        print(f"{f:10s}" + "".join(f"{r2[f]:>9.3f} ±{sd[f]:.3f}" for r2, sd in cells.values()))
    print(f"decode mean R² ([h, c]) {s['decode_mean_r2']:.3f}; encode R² (belief → [h, c]) "
          f"{s['encode_r2']:.3f} ± {s['encode_r2_sd']:.3f}")
    print(f"policy KL(Bayes ‖ agent) {s['policy_kl']:.4f} nats/step; agreement {s['agreement']:.3f}")
    for name, b in s.get("behaviour_by_network", {}).items():
        print(f"{name} on its own episodes: policy KL {b['policy_kl']:.4f} nats/step; agreement "
              f"{b['agreement']:.3f}; return {b['mean_return']:.3f}")
    print(f"\nState-machine simulation ({s['simulation_episodes']} episodes, same folds; state "
          "dissimilarity 0 = perfect, 1 = no better than the mean one-step change; output KL in "
          "nats/step and relative to the agent's mean policy)")
    sim = s["simulation"]
    nets = list(sim["agent_to_bayes"]["state_dissimilarity"])   # trained, untrained, controls
    columns = [(n, k) for n in nets for k in ("linear", "mlp")]
    print(f"{'direction':16s}{'measure':22s}" + "".join(f"{n + ' ' + k:>17s}" for n, k in columns)
          + f"{'shuffled lin.':>17s}{'shuffled mlp':>17s}")
    for d in machines.DIRECTION_LABEL:
        for m in ("state_dissimilarity", "output_kl", "output_kl_relative", "action_agreement"):
            print(f"{d:16s}{m:22s}" + "".join(f"{sim[d][m][n][k]:>17.4f}" for n, k in columns)
                  + "".join(f"{sim['shuffled'][d][m]['trained'][k]:>17.4f}"
                            for k in ("linear", "mlp")))
    mini = s["minimality"]
    print("\nMinimality: held-out partial R² of history features beyond the belief")
    print(f"{'feature':24s}" + "".join(f"{n:>11s}" for n in nets))
    for f in mini["partial_r2"]["trained"]:
        print(f"{f:24s}" + "".join(f"{mini['partial_r2'][n][f]:>11.3f}" for n in nets))
    print(f"{'within/between ratio':24s}"
          + "".join(f"{mini['within_between_ratio'][n]:>11.4f}" for n in nets))
    inter = s["interchange"]
    print("\nInterchange: mass on the donor's Bayes actions after swapping the linearly "
          "aligned belief subspace (a random subspace of the same dimension beside it)")
    print("".join(f"{n}: {fmt(inter[n]['interchange'])} (random "
                  f"{fmt(inter[n]['interchange_random'])})   " for n in nets))
    print("\nSplicing: agreement of the most likely action with the Bayes action, over the "
          "steps where the two histories' Bayes actions differ")
    print(f"{'machine':26s}{'spliced (i)':>12s}{'recipient (ii)':>15s}{'own (ceiling)':>14s}"
          f"{'steps':>9s}")
    for name, r in (("agent", s["splice"]), (f"control (last {s['splice']['control']['window']})",
                                              s["splice"]["control"]),
                    *s.get("splice_by_network", {}).items()):
        print(f"{name:26s}{fmt(r['agreement_spliced']):>12s}{fmt(r['agreement_recipient']):>15s}"
              f"{fmt(r['agreement_own']):>14s}{r['steps']:>9d}")
    v = s["value_loss"]
    gap = ("" if v.get("identity_gap") is None else
           f"; Σ loss − (V*_0 − return) = {v['identity_gap']:.3f} ± {v['identity_gap_se']:.3f}")
    print(f"\nValue loss {s['value_loss_per_step']:.4f} ± {s['value_loss_per_step_se']:.4f} "
          f"per step ({v['episodes']} episodes){gap}")
    for name, v in s.get("value_loss_by_network", {}).items():
        print(f"value loss of {name}: {v['value_loss_per_step']:.4f} ± "
              f"{v['value_loss_per_step_se']:.4f} per step")
    if "ladders" in s:
        print_ladders(s["ladders"])


def print_ladders(p):
    """The agent's position on each ladder, with its interval and verdict."""
    print(f"\nLadders ({len(p['seeds'])} seeds, {p['episodes']} episodes): the agent's position "
          "in each ladder's units [interval] by the test that places it")
    for ladder in ladders.LADDERS:
        prop = p["profile"][ladder.name]
        placed = prop["tests"].get(prop["chosen"]) if prop["chosen"] else None
        where = ("no test qualifies" if placed is None else placed["outside"]
                 if "outside" in placed else
                 f"{ladder.unit} {placed['position']:.3g} [{placed['low']:.3g}, "
                 f"{placed['high']:.3g}] ({prop['chosen']})")
        print(f"{ladder.name:12s}{where} → {prop['verdict']}")


def fmt(x):
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


if __name__ == "__main__":
    import probe   # run as the module itself: Numba caches must never name __main__
    raise SystemExit(probe.main())
