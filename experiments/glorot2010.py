"""Glorot & Bengio (AISTATS 2010), "Understanding the difficulty of training deep feedforward
neural networks", on MNIST-1D and digits (and local MNIST when $SIGJAX_DATA_DIR has it).

Their setup: 5 hidden layers of 1000 units for Table 1 (4 for the sigmoid network of their
Fig. 2, the one that slowly desaturates; with 5 it never does), softmax + negative
log-likelihood, SGD on minibatches of 10 for about 5 million updates, the learning rate tuned
per model on a validation set, biases 0, and two initialisations: "standard" U[±1/√n_in] and
"normalized" U[±√6/√(n_in + n_out)], for the sigmoid, tanh and softsign. Here every
(dataset, activation) pair is one compiled program whose members are every (init scheme,
learning rate, seed): the init scheme only changes the initial weights, so both schemes share
the training program.

Measured, for every member:
- the usual per-step records (minibatch loss, per-layer gradient norms, …), and the loss and
  error on a validation split (the last eighth of the training set, never trained on) at each
  logged step; the test error of the final model on the real test split;
- activation trajectories (their Fig. 2–4): mean, std and the 2nd / 98th percentiles of each
  layer's activations on 300 fixed test examples, at init and after every log interval;
- distributions at init and after training (Fig. 6–8): per-layer variances and histograms of the
  activations, of the back-propagated gradients ∂ℓ/∂z_l (per example) and of the weight
  gradients ∂L/∂W_l, on the same 300 examples; and each layer's average singular value of its
  Jacobian ∂h_l/∂h_{l-1} (their Sec. 4.2.2), on the first N_JAC of them.

The learning rate of each (dataset, variant) is the one with the lowest mean final validation
error (rates within one percentage point of it tie, and the lower validation loss breaks the
tie); Table 1's analogue reports the test error at that rate, mean ± std over seeds, and each
ordering claim of the paper with a Welch t-test (or bootstrap interval) over the seeds. The
quick setting (the default) is width 64, depth 4 and 15000 steps; `--full` is their width
1000, 100000 steps, depth 4 and 5, more rates and seeds, and MNIST when $SIGJAX_DATA_DIR/mnist
exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from experiments import _extra
from sigjax import config
from sigjax import data as data_lib
from sigjax.analysis import plotting
from sigjax.config import Config
from sigjax.engine import probed_sweep, probes, train
from sigjax.nn import activations, losses, models
from sigjax.study import Study

ACTIVATIONS = ("sigmoid", "tanh", "softsign")
SCHEMES = ("standard", "normalized")
N_PROBE = 300  # fixed test examples for activation trajectories and distributions (as theirs)
# examples for the layer-Jacobian spectra: each gives min(n_in, n_out) singular values, so a few
# suffice, and one SVD per example and layer stays cheap at width 1000
N_JAC = 20
VAL_FRACTION = 8  # the last 1/8 of the training set is the validation split
ACT_BINS = np.linspace(-1.0, 1.0, 61)
GRAD_RANGE = 4.0  # gradient histograms span ±4 std of the top hidden layer's values
GRAD_BINS = np.linspace(-GRAD_RANGE, GRAD_RANGE, 61)
WHEN = ("init", "final")

# ----------------------------------------------------------------- data: train / validation


def split_data(full: data_lib.Data) -> tuple[data_lib.Data, jax.Array, jax.Array, dict]:
    """(training data whose "test" slot is the validation split, probe x, probe y, test set).

    The validation split is the last 1/VAL_FRACTION of the training set; the probe batch is the
    first N_PROBE test examples (Glorot & Bengio used 300 fixed test examples).
    """
    n = full.x_train.shape[0]
    n_val = max(1, n // VAL_FRACTION)
    train_data = data_lib.Data(
        x_train=full.x_train[: n - n_val],
        y_train=full.y_train[: n - n_val],
        x_test=full.x_train[n - n_val :],
        y_test=full.y_train[n - n_val :],
        n_classes=full.n_classes,
    )
    test = {"x": full.x_test, "y": full.y_test}
    return train_data, full.x_test[:N_PROBE], full.y_test[:N_PROBE], test


# ----------------------------------------------------------------- the network, by hand


def forward(params, x, activation: str, head_activation: str = "identity", shifts=None):
    """The MLP of sigjax.nn.models as plain jnp: (outputs, pre-activations, activations).

    `shifts` (one array per layer, shaped like z_l) are added to the pre-activations, so that
    the gradient of a loss with respect to them is the back-propagated gradient ∂L/∂z_l.
    """
    names = models.layer_names(params)
    pre, post = [], []
    for i, name in enumerate(names):
        z = x @ params[name]["kernel"] + params[name]["bias"]
        if shifts is not None:
            z = z + shifts[i]
        x = activations.get(activation if i < len(names) - 1 else head_activation)(z)
        pre.append(z)
        post.append(x)
    return x, pre, post


def probe_stats(prog: train.Program, params, x) -> dict[str, jax.Array]:
    """Mean, std, 2nd and 98th percentiles of each layer's activations on x: (n_layers,) each."""
    _, _, post = forward(params, x, prog.cfg.model.activation, prog.cfg.model.head_activation)
    return {f"probe_{k}": v for k, v in probes.quantile_stats(post).items()}


def distributions(prog: train.Program, params, x, y) -> dict[str, jax.Array]:
    """Per-layer variances and histograms of activations, back-propagated gradients ∂ℓ_i/∂z_l
    (of each example's own loss) and weight gradients ∂L/∂W_l (L the mean loss over x).

    Gradient histograms are in units of the top hidden layer's std (the output layer's for a
    net without hidden layers), so that the layers share one axis as in the paper's figures.
    "jac_sv" is each layer's average singular value of ∂h_l/∂h_{l-1} (their Sec. 4.2.2) over
    the first N_JAC examples of x.
    """
    act, head = prog.cfg.model.activation, prog.cfg.model.head_activation
    loss_fn = losses.get(prog.cfg.train.loss)
    _, pre, post = forward(params, x, act, head)

    def summed(shifts):
        out, _, _ = forward(params, x, act, head, shifts)
        return loss_fn(out, y) * x.shape[0]

    gz = jax.grad(summed)([jnp.zeros_like(z) for z in pre])
    gw_tree = jax.grad(lambda p: loss_fn(forward(p, x, act, head)[0], y))(params)
    names = models.layer_names(params)
    gw = [gw_tree[n]["kernel"] for n in names]
    kernels = [params[n]["kernel"] for n in names]
    acts = [act] * (len(names) - 1) + [head]
    top = max(len(pre) - 2, 0)
    sz, sw = gz[top].std() + 1e-30, gw[top].std() + 1e-30
    return {
        "var_act": jnp.stack([a.var() for a in post]),
        "var_backprop": jnp.stack([g.var() for g in gz]),
        "var_wgrad": jnp.stack([g.var() for g in gw]),
        "hist_act": jnp.stack([probes.density(a, ACT_BINS) for a in post]),
        "hist_backprop": jnp.stack([probes.density(g / sz, GRAD_BINS) for g in gz]),
        "hist_wgrad": jnp.stack([probes.density(g / sw, GRAD_BINS) for g in gw]),
        "jac_sv": probes.mean_jacobian_svs(kernels, [z[:N_JAC] for z in pre], acts),
    }


# ----------------------------------------------------------------- the study


def local_mnist_available() -> bool:
    """True when $SIGJAX_DATA_DIR/mnist/ exists (then the full setting adds MNIST)."""
    import os

    from sigjax.data.sources import DATA_DIR_ENV

    root = os.environ.get(DATA_DIR_ENV)
    return bool(root) and (Path(root).expanduser() / "mnist").is_dir()


CONFIG = config.replace(
    Config(),
    {
        "data.name": "mnist1d",
        "data.seed": 42,  # the canonical MNIST-1D; the digits split with the same seed
        # 4 hidden layers: the depth of their Fig. 2 sigmoid network, which desaturates (their
        # 5-layer sigmoid network never does)
        "model.depth": 4,
        "model.width": 64,
        "model.activation": "sigmoid",
        "model.head_activation": "identity",
        "init.scheme": "standard",
        "init.sigma_w2": 1.0,  # the schemes exactly as defined, biases 0
        "init.sigma_b2": 0.0,
        "optim.name": "sgd",
        "train.loss": "softmax_ce",
        "train.batch_size": 10,
        # long enough for the depth-4 sigmoid to leave its plateau on digits (it does between
        # steps 3000 and 15000, seed by seed, at lr 1)
        "train.steps": 15000,
        "train.log_every": 500,
        "train.loss_threshold": 1.0,
    },
)
GRID = {
    "data.name": ("mnist1d", "digits"),
    "model.activation": ACTIVATIONS,
    "init.scheme": SCHEMES,
    "optim.lr": (0.1, 0.3, 1.0),
    "seed": tuple(range(6)),
}
FULL = (  # their width; still 1/50 of their ~5 million updates
    {"model.width": 1000, "train.steps": 100000, "train.log_every": 2000},
    {
        "data.name": ("mnist1d", "digits", *(("mnist",) if local_mnist_available() else ())),
        "model.depth": (4, 5),
        "optim.lr": (0.01, 0.03, 0.1, 0.3, 1.0),
        "seed": tuple(range(10)),
    },
)

TAILS = {
    "probe_mean": ("step", "layer"),
    "probe_std": ("step", "layer"),
    "probe_p02": ("step", "layer"),
    "probe_p98": ("step", "layer"),
    "var_act": ("when", "layer"),
    "var_backprop": ("when", "layer"),
    "var_wgrad": ("when", "layer"),
    "hist_act": ("when", "layer", "abin"),
    "hist_backprop": ("when", "layer", "gbin"),
    "hist_wgrad": ("when", "layer", "gbin"),
    "jac_sv": ("when", "layer"),
    "final_test_error": (),
    "final_test_loss": (),
}
COORDS = {
    "when": WHEN,
    "abin": 0.5 * (ACT_BINS[1:] + ACT_BINS[:-1]),
    "gbin": 0.5 * (GRAD_BINS[1:] + GRAD_BINS[:-1]),
}


def make_data(cfg: Config):
    train_data, x, y, test = split_data(data_lib.load(cfg.data))
    return train_data, {"x": x, "y": y, "test": test}


def _probe(prog, params, *, x, y, test):
    return probe_stats(prog, params, x)


def _final(prog, p0, p1, *, x, y, test):
    d0, d1 = distributions(prog, p0, x, y), distributions(prog, p1, x, y)
    out = {k: jnp.stack([d0[k], d1[k]]) for k in d0}
    logits = forward(p1, test["x"], prog.cfg.model.activation, prog.cfg.model.head_activation)[0]
    loss = prog.cfg.train.loss
    out["final_test_error"] = 1.0 - losses.accuracy(logits, test["y"], loss)
    out["final_test_loss"] = losses.get(loss)(logits, test["y"])
    return out


def compute(cfg: Config, axes, progress: bool, store) -> xr.Dataset:
    ds = probed_sweep.run_merged(
        cfg,
        axes,
        make_data=make_data,
        probe=_probe,
        final=_final,
        progress=progress,
        store=store,
        tails=TAILS,
        coords=COORDS,
    )
    return ds.rename({"test_loss": "val_loss", "test_accuracy": "val_accuracy"})


# ----------------------------------------------------------------- report

PAPER_ORDER = ("softsign", "tanh", "sigmoid")


def variant(act: str, scheme: str) -> str:
    if scheme == "standard":
        return act
    if scheme in ("normalized", "glorot_uniform"):
        return f"{act}-N"
    return f"{act} ({scheme})"


TIE = 0.01  # mean validation errors within one percentage point of the best count as a tie


def best_lr(ds: xr.Dataset) -> xr.DataArray:
    """Per setting, the learning rate with the lowest mean final validation error (a diverged
    member counts as error 1); rates within TIE of it are a tie, which the lower mean final
    validation loss breaks (so a net stuck at chance at every rate gets the rate that fits
    best, not the one whose constant guess happened to hit a slightly larger class)."""
    err = (1.0 - ds.val_accuracy.isel(step=-1, drop=True)).fillna(1.0).mean("seed")
    loss = ds.val_loss.isel(step=-1, drop=True).fillna(np.inf).mean("seed")
    tied = err <= err.min("lr") + TIE
    return loss.where(tied, np.inf).idxmin("lr")


def at_best(da: xr.DataArray, best: xr.DataArray) -> xr.DataArray:
    return da.sel(lr=best, drop=True)


def _settings(ds: xr.Dataset) -> list[dict]:
    """Every combination of the dims other than activation, scheme, lr, seed, step, layer…"""
    skip = {"activation", "scheme", "lr", "seed", "step", "layer", "when", "abin", "gbin"}
    dims = [d for d in ds.final_test_error.dims if d not in skip]
    combos = [{}]
    for d in dims:
        combos = [c | {d: v} for c in combos for v in ds[d].values.tolist()]
    return combos


def _label(setting: dict) -> str:
    return ", ".join(
        f"{v}" if k == "name" else f"{k} {_extra.value(v)}" for k, v in setting.items()
    )


OWN_SETTINGS = ("name", "depth")  # the paper's own columns: every figure repeats them


def _figure_settings(ds: xr.Dataset) -> tuple[list[dict], str]:
    """The settings the per-setting figures draw: every dataset (and depth) times every
    setting of a user's other grid dims when there are few, else their first values; and a
    note saying what is left out ('' when nothing)."""
    dims = list(_settings(ds)[0])
    own = [d for d in dims if d in OWN_SETTINGS]
    extra = [d for d in dims if d not in own]
    return _extra.figure_settings(ds.final_test_error, extra, loop=own)


def _first_note(ds: xr.Dataset) -> str:
    """What a figure drawn at the first setting alone leaves out ('' when there is one)."""
    n = len(_settings(ds))
    return f" (the first of {n} settings; table.md has them all)" if n > 1 else ""


def table(ds: xr.Dataset) -> list[dict]:
    best = best_lr(ds)
    err = at_best(ds.final_test_error, best)
    val = at_best((1.0 - ds.val_accuracy.isel(step=-1, drop=True)), best)
    div = at_best(ds.diverged_at.notnull(), best)
    rows = []
    acts = [a for a in PAPER_ORDER if a in ds.activation.values.tolist()]
    acts += [a for a in ds.activation.values.tolist() if a not in acts]
    for setting in _settings(ds):
        for act in acts:
            for scheme in ds.scheme.values.tolist():
                sel = {**setting, "activation": act, "scheme": scheme}
                e = err.sel(sel).values * 100
                rows.append(
                    {
                        **setting,
                        "variant": variant(act, scheme),
                        "activation": act,
                        "scheme": scheme,
                        "best_lr": float(best.sel(sel)),
                        "val_error_mean": float(np.nanmean(val.sel(sel).values) * 100),
                        "test_error_mean": float(np.nanmean(e)),
                        "test_error_std": float(np.nanstd(e, ddof=1))
                        if np.sum(~np.isnan(e)) > 1
                        else float("nan"),
                        "n_seeds": int(np.sum(~np.isnan(e))),
                        "n_diverged": int(div.sel(sel).sum()),
                    }
                )
    return rows


def seed_errors(ds: xr.Dataset) -> xr.DataArray:
    """Test error (%) of every seed at its variant's best learning rate (NaN: diverged)."""
    return at_best(ds.final_test_error, best_lr(ds)) * 100


N_BOOT = 10000  # bootstrap resamples of the seeds (a fixed NumPy stream: the same every run)


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Welch t-test p-value of mean(a) = mean(b), over the finite values (NaN when
    either side has fewer than 2 values or both are constant)."""
    from scipy import stats

    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if min(len(a), len(b)) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def gain_interval(
    std_a, norm_a, std_b, norm_b, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(estimate, lo, hi) of (mean std_a − mean norm_a) − (mean std_b − mean norm_b): how much
    more activation a gains from normalized init than b, with a percentile bootstrap interval
    (each of the four groups of seeds resampled on its own)."""
    rng = np.random.default_rng(seed)
    groups = [np.asarray(g, float)[np.isfinite(g)] for g in (std_a, norm_a, std_b, norm_b)]
    means = [rng.choice(g, (N_BOOT, len(g))).mean(1) for g in groups]
    boot = (means[0] - means[1]) - (means[2] - means[3])
    est = (groups[0].mean() - groups[1].mean()) - (groups[2].mean() - groups[3].mean())
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(est), float(lo), float(hi)


def claims(ds: xr.Dataset) -> list[dict]:
    """The paper's ordering claims, tested over seeds at each variant's best learning rate, per
    setting: normalized beats standard (per activation), the best model beats the runner-up
    (Welch p-values, errors in %), and softsign gains less from normalized init than tanh
    (bootstrap 95 % interval of the difference of the two gains)."""
    err = seed_errors(ds)
    acts = ds.activation.values.tolist()
    schemes = ds.scheme.values.tolist()
    out = []
    for setting in _settings(ds):
        e = err.sel(setting)

        def seeds(act, scheme, e=e):
            return e.sel(activation=act, scheme=scheme).values

        row = {**setting}
        if "normalized" in schemes and "standard" in schemes:
            for act in acts:
                s, n = seeds(act, "standard"), seeds(act, "normalized")
                out.append(
                    row
                    | {
                        "claim": f"{variant(act, 'normalized')} < {act}",
                        "difference": float(np.nanmean(s) - np.nanmean(n)),
                        "p_value": welch_p(s, n),
                    }
                )
            if {"tanh", "softsign"} <= set(acts):
                est, lo, hi = gain_interval(
                    seeds("tanh", "standard"),
                    seeds("tanh", "normalized"),
                    seeds("softsign", "standard"),
                    seeds("softsign", "normalized"),
                )
                out.append(
                    row
                    | {
                        "claim": "gain(tanh) > gain(softsign)",
                        "difference": est,
                        "ci_low": lo,
                        "ci_high": hi,
                    }
                )
        ranked = sorted(
            ((np.nanmean(seeds(a, sc)), a, sc) for a in acts for sc in schemes),
            key=lambda t: np.inf if np.isnan(t[0]) else t[0],
        )
        if len(ranked) > 1:
            (m1, a1, s1), (m2, a2, s2) = ranked[:2]
            out.append(
                row
                | {
                    "claim": f"{variant(a1, s1)} best (vs {variant(a2, s2)})",
                    "difference": float(m2 - m1),
                    "p_value": welch_p(seeds(a1, s1), seeds(a2, s2)),
                }
            )
    return out


def _depths(ds: xr.Dataset, cfg: Config) -> str:
    """'4 hidden layers', or '4 and 5 hidden layers (a column each)' for a depth axis."""
    if "depth" in ds.dims:
        d = ds.depth.values.tolist()
        listed = ", ".join(map(str, d[:-1])) + f" and {d[-1]}" if len(d) > 1 else f"{d[0]}"
        return f"{listed} hidden layers (a column each)"
    return f"{cfg.model.depth} hidden layers"


def _p(p: float) -> str:
    return "n/a (constant)" if np.isnan(p) else f"{p:.2g}"


def _markdown(rows: list[dict], ds: xr.Dataset, tests: list[dict]) -> str:
    settings = [_label(s) for s in _settings(ds)]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    cfg = config.from_dict(json.loads(ds.attrs["config"]))
    n_seeds = ds.sizes.get("seed", 1)
    lines = [
        f"Test error (%) at each variant's best learning rate (chosen on the validation split), "
        f"mean ± std over {n_seeds} seeds; {_depths(ds, cfg)} of width {cfg.model.width}, "
        f"SGD with minibatches of {cfg.train.batch_size}, {cfg.train.steps} steps. "
        "'-N': normalized initialisation.",
        "",
        "| variant | " + " | ".join(settings) + " |",
        "|---|" + "---|" * len(settings),
    ]
    for v in variants:
        cells = []
        for s in _settings(ds):
            r = next(r for r in rows if r["variant"] == v and all(r[k] == s[k] for k in s))
            cell = f"{r['test_error_mean']:.1f} ± {r['test_error_std']:.1f} (lr {r['best_lr']:g})"
            if r["n_diverged"]:
                cell += f", {r['n_diverged']} diverged"
            cells.append(cell)
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    if tests:
        lines += [
            "",
            "Ordering claims over the seeds above: difference of mean test errors (points; "
            "positive: the claim's direction), two-sided Welch t-test p-value, or for the gain "
            "comparison a bootstrap 95 % interval.",
            "",
            "| setting | claim | difference | test |",
            "|---|---|---|---|",
        ]
        for t in tests:
            test = (
                f"95 % CI [{t['ci_low']:.1f}, {t['ci_high']:.1f}]"
                if "ci_low" in t
                else f"p = {_p(t['p_value'])}"
            )
            setting = _label({k: t[k] for k in _settings(ds)[0]})
            lines.append(f"| {setting} | {t['claim']} | {t['difference']:+.1f} | {test} |")
    return "\n".join(lines) + "\n"


def jacobian_svs(ds: xr.Dataset) -> xr.DataArray:
    """Average singular value of the hidden-to-hidden layer Jacobians ∂h_l/∂h_{l-1} (l = 2 ..
    depth) at init, mean over seeds (the first learning rate: init does not depend on it)."""
    sv = ds.jac_sv.sel(when="init", drop=True).isel(lr=0, drop=True)
    hidden = (sv.layer >= 2) & (sv.layer <= ds.n_layers.isel(lr=0, drop=True) - 1)
    return sv.where(hidden).mean(["layer", "seed"])


def gradient_ratios(ds: xr.Dataset) -> xr.Dataset:
    """Var at the first hidden layer / Var at the top hidden layer, mean over seeds at the best
    learning rate, for back-propagated gradients, weight gradients and activations."""
    best = best_lr(ds)
    top = ds.n_layers - 1  # index of the top hidden layer +1 … layers are 1-based
    out = {}
    for name in ("var_backprop", "var_wgrad", "var_act"):
        da = at_best(ds[name], best)
        first = da.sel(layer=1, drop=True)
        last = da.isel(layer=(at_best(top, best) - 1).clip(0), drop=True)
        out[name] = (first / last).mean("seed")
    return xr.Dataset(out)


def report(ds: xr.Dataset, out: Path) -> dict:
    rows = table(ds)
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "table.csv", index=False)
    note = _figure_settings(ds)[1]
    tests = claims(ds)
    pd.DataFrame(tests).to_csv(out / "claims.csv", index=False)
    md = _markdown(rows, ds, tests)
    (out / "table.md").write_text(md + (f"\nNote: {note}.\n" if note else ""))
    ratios = gradient_ratios(ds)
    _fig_activations(ds, out)
    _fig_distributions(ds, out)
    _fig_variances(ds, out)
    _fig_val_error(ds, out)
    head = {
        "table": {
            f"{_label({k: r[k] for k in _settings(ds)[0]})}/{r['variant']}": {
                "test_error_mean": r["test_error_mean"],
                "test_error_std": r["test_error_std"],
                "best_lr": r["best_lr"],
                "n_diverged": r["n_diverged"],
            }
            for r in rows
        },
        "claims": [
            {k: (v.item() if isinstance(v, np.generic) else v) for k, v in t.items()} for t in tests
        ],
        "first_over_top_hidden_variance_at_init": {},
        "mean_layer_jacobian_singular_value_at_init": {},
        "sigmoid_top_layer_mean_activation": {},
    }
    sv = jacobian_svs(ds)
    for s in _settings(ds):
        r0 = ratios.sel(s).sel(when="init")
        for act in ds.activation.values.tolist():
            for scheme in ds.scheme.values.tolist():
                key = f"{_label(s)}/{variant(act, scheme)}"
                one = r0.sel(activation=act, scheme=scheme)
                head["first_over_top_hidden_variance_at_init"][key] = {
                    k: float(one[k]) for k in ("var_backprop", "var_wgrad", "var_act")
                }
                one_sv = sv.sel(s).sel(activation=act, scheme=scheme)
                head["mean_layer_jacobian_singular_value_at_init"][key] = float(one_sv)
        if "sigmoid" in ds.activation.values and "standard" in ds.scheme.values:
            one = _trajectory(ds, s, "sigmoid", "standard")
            top = int(one.n_layers) - 1
            m = one.probe_mean.sel(layer=top)
            head["sigmoid_top_layer_mean_activation"][_label(s)] = {
                "init": float(m.isel(step=0)),
                "min": float(m.min()),
                "step_of_min": int(m.idxmin("step")),
                "final": float(m.isel(step=-1)),
            }
    note = _figure_settings(ds)[1]
    if note:
        head["figure_note"] = note
    (out / "headline.json").write_text(json.dumps(head, indent=2) + "\n")
    return head


def _trajectory(ds, setting, act, scheme):
    """The first seed at the best learning rate of one variant."""
    sel = {**setting, "activation": act, "scheme": scheme}
    lr = float(best_lr(ds).sel(sel))
    return ds.sel(sel).sel(lr=lr).isel(seed=0)


def _hidden(one) -> list[int]:
    return list(range(1, int(one.n_layers)))


def _fig_activations(ds, out):
    settings, note = _figure_settings(ds)
    schemes = ds.scheme.values.tolist()
    acts = ds.activation.values.tolist()
    cols = [(s, sc) for s in settings for sc in schemes]
    fig, axes = plotting.subplots(len(acts), len(cols), size=(3.0, 2.2), sharex=True)
    cmap = plotting.plt.get_cmap("viridis")
    for i, act in enumerate(acts):
        for j, (s, sc) in enumerate(cols):
            ax = axes[i, j]
            one = _trajectory(ds, s, act, sc)
            hidden = _hidden(one)
            for layer in hidden:
                c = cmap((layer - 1) / max(len(hidden) - 1, 1))
                p = one.sel(layer=layer)
                ax.plot(one.step, p.probe_mean, color=c, lw=1.4, label=f"layer {layer}")
                for q in (p.probe_p02, p.probe_p98):
                    ax.plot(one.step, q, color=c, lw=0.8, ls=":")
            lo = 0.0 if act == "sigmoid" else -1.0
            ax.set_ylim(lo - 0.05, 1.05)
            lr = float(best_lr(ds).sel({**s, "activation": act, "scheme": sc}))
            ax.text(
                0.98,
                0.02,
                f"lr {lr:g}",
                ha="right",
                va="bottom",
                fontsize=7,
                transform=ax.transAxes,
            )
            if i == 0:
                ax.set_title(f"{_label(s)}, {sc}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{act}\nactivation")
            if i == len(acts) - 1:
                ax.set_xlabel("step")
    axes[0, 0].legend(fontsize=6, loc="lower left")
    fig.suptitle(
        "Activations on 300 fixed test examples during training (best lr, first seed): "
        "mean (solid), 2nd and 98th percentiles (dotted)" + (f"\n{note}" if note else ""),
        fontsize=10,
    )
    fig.tight_layout()
    plotting.save(fig, out, "activations")


def _pick_act(ds) -> str:
    acts = ds.activation.values.tolist()
    return "tanh" if "tanh" in acts else acts[0]


def _fig_distributions(ds, out):
    s = _settings(ds)[0]
    act = _pick_act(ds)
    best = best_lr(ds)
    panels = [
        ("hist_act", "init", "activation value"),
        ("hist_act", "final", "activation value"),
        ("hist_backprop", "init", "∂ℓ/∂z_l (÷ std at top hidden layer)"),
        ("hist_backprop", "final", "∂ℓ/∂z_l (÷ std at top hidden layer)"),
        ("hist_wgrad", "init", "∂L/∂W_l (÷ std at top hidden layer)"),
    ]
    schemes = ds.scheme.values.tolist()
    fig, axes = plotting.subplots(len(schemes), len(panels), size=(3.0, 2.4))
    cmap = plotting.plt.get_cmap("viridis")
    for i, sc in enumerate(schemes):
        sel = {**s, "activation": act, "scheme": sc}
        one = at_best(ds.sel(sel), best.sel(sel))
        hidden = list(range(1, int(one.n_layers.max())))
        for j, (var, when, xlabel) in enumerate(panels):
            ax = axes[i, j]
            h = one[var].sel(when=when).mean("seed")
            x = h[h.dims[-1]]
            for layer in hidden:
                c = cmap((layer - 1) / max(len(hidden) - 1, 1))
                ax.plot(x, h.sel(layer=layer), color=c, lw=1, label=f"layer {layer}")
            ax.set_yscale("log")
            ax.set_ylim(bottom=1e-3 * float(h.sel(layer=hidden).max()))
            if i == 0:
                ax.set_title(f"{var.split('_')[1]} at {when}", fontsize=9)
            if i == len(schemes) - 1:
                ax.set_xlabel(xlabel, fontsize=8)
        axes[i, 0].set_ylabel(f"{sc}\ndensity")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(
        f"{act}, {_label(s)}{_first_note(ds)}: per-layer histograms on 300 test examples "
        "(mean over seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    plotting.save(fig, out, "distributions")


def _fig_variances(ds, out):
    s = _settings(ds)[0]
    best = best_lr(ds)
    acts = ds.activation.values.tolist()
    rows = [
        ("var_backprop", "Var ∂ℓ/∂z_l"),
        ("var_wgrad", "Var ∂L/∂W_l"),
        ("var_act", "Var a_l"),
    ]
    fig, axes = plotting.subplots(len(rows), len(acts), size=(3.2, 2.5), sharex=True)
    for j, act in enumerate(acts):
        for sc_i, sc in enumerate(ds.scheme.values.tolist()):
            sel = {**s, "activation": act, "scheme": sc}
            one = at_best(ds.sel(sel), best.sel(sel))
            hidden = list(range(1, int(one.n_layers.max())))
            for i, (var, name) in enumerate(rows):
                for when, ls in zip(WHEN, ("-", "--"), strict=True):
                    v = one[var].sel(when=when, layer=hidden).mean("seed")
                    v = v / v.sel(layer=hidden[-1])
                    axes[i, j].plot(
                        hidden,
                        v,
                        ls,
                        marker="o",
                        ms=3,
                        color=f"C{sc_i}",
                        label=f"{sc}, {'init' if when == 'init' else 'after training'}",
                    )
                axes[i, j].set_yscale("log")
                if j == 0:
                    axes[i, j].set_ylabel(f"{name}\n÷ top hidden layer")
        axes[0, j].set_title(act)
        axes[-1, j].set_xlabel("hidden layer (1 = next to the input)")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(
        f"{_label(s)}{_first_note(ds)}: per-layer variances (300 test examples, mean over seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    plotting.save(fig, out, "variances")


def _fig_val_error(ds, out):
    settings, note = _figure_settings(ds)
    best = best_lr(ds)
    fig, axes = plotting.subplots(1, len(settings), size=(4.0, 3.0))
    for j, s in enumerate(settings):
        ax = axes[0, j]
        i = 0
        for act in ds.activation.values.tolist():
            for sc in ds.scheme.values.tolist():
                sel = {**s, "activation": act, "scheme": sc}
                err = 1.0 - at_best(ds.val_accuracy.sel(sel), best.sel(sel))
                ls = "-" if sc == "standard" else "--"
                plotting.band(ax, err, color=plotting.color(act, i), ls=ls, label=variant(act, sc))
                i += 1
        ax.set(title=_label(s), xlabel="step", ylabel="validation error (median, 10-90 %)")
        ax.set_ylim(0, 1)
    axes[0, -1].legend(fontsize=7)
    if note:
        fig.suptitle(note, fontsize=10)
    fig.tight_layout()
    plotting.save(fig, out, "val_error")


STUDY = Study(
    name="glorot2010",
    description=(
        "Glorot & Bengio 2010: sigmoid/tanh/softsign, standard vs normalized init, 4 hidden "
        "layers, SGD batch 10 on MNIST-1D and digits: activation trajectories, per-layer "
        "distributions, layer-Jacobian singular values, Table 1 analogue with Welch tests; "
        "table.md, claims.csv, figures/"
    ),
    config=CONFIG,
    grid=GRID,
    report=report,
    compute=compute,
    presets={"quick": ({}, {}), "full": FULL},
)
