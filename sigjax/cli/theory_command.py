"""`sigjax theory ...`: mean-field critical points, fixed points and critical lines.

    sigjax theory critical --activation NAME [--sigma-b2 X]       last line: the critical σ_w²
    sigjax theory point --activation NAME --sigma-w2 X [--sigma-b2 Y] [--q-start Q] [--json]
    sigjax theory line --activation NAME [--sigma-b2-max M] [--points K]

All variances are σ² (not σ). In --json output, non-finite numbers are the strings "inf"/"nan"
(float() reads them back). Mistakes raise UserError.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from sigjax import theory
from sigjax.errors import UserError

# A point costs a root-find (about 6 ms for tanh on one core): 10000 points take about a minute
# and are far finer than any plot needs; 10**8 would run for days and fill memory first.
MAX_POINTS = 10_000


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `theory` subcommand (with critical / point / line) to an argparse subparsers."""
    p = subparsers.add_parser(
        "theory",
        help="mean-field signal propagation: critical sigma_w^2, fixed points, critical line",
        description="Mean-field theory of wide random MLPs, W ~ N(0, sigma_w2/fan_in), "
        "b ~ N(0, sigma_b2) (variances, not standard deviations).",
    )
    sub = p.add_subparsers(dest="theory_command", metavar="{critical,point,line}", required=True)

    c = sub.add_parser("critical", help="the sigma_w2 with chi_1 = 1 at one sigma_b2")
    _activation(c)
    c.add_argument("--sigma-b2", type=float, default=0.0, help="bias variance (default 0)")
    c.add_argument(
        "--q-start",
        type=float,
        default=1.0,
        help="first layer's pre-activation variance; sets q* only where every q is a fixed "
        "point (relu at sigma_b2 = 0), as in `point` (default 1)",
    )
    c.set_defaults(func=_run_critical)

    pt = sub.add_parser("point", help="q*, c*, chi_1, chi_c, xi_q, xi_c and the phase")
    _activation(pt)
    pt.add_argument("--sigma-w2", type=float, required=True, help="weight variance")
    pt.add_argument("--sigma-b2", type=float, default=0.0, help="bias variance (default 0)")
    pt.add_argument(
        "--q-start",
        type=float,
        default=1.0,
        help="first layer's pre-activation variance the length map starts from (default 1)",
    )
    pt.add_argument("--json", action="store_true", help="print one JSON object")
    pt.set_defaults(func=_run_point)

    ln = sub.add_parser("line", help="table of the critical line sigma_w2(sigma_b2)")
    _activation(ln)
    ln.add_argument("--sigma-b2-max", type=float, default=1.0, help="largest sigma_b2 (default 1)")
    ln.add_argument(
        "--points",
        type=int,
        default=11,
        help=f"number of sigma_b2 values, 2..{MAX_POINTS} (default 11)",
    )
    ln.set_defaults(func=_run_line)
    return p


def _activation(p: argparse.ArgumentParser) -> None:
    p.add_argument("--activation", required=True, help="activation name, e.g. tanh, sigmoid")


def _num(x: float) -> str:
    return f"{x:.12g}"


def _repelling(activation: str, sigma_b2: float) -> str:
    """Why there is no stable critical point: where the edge-of-chaos curve is and where it
    attracts ('' when there is no fixed point with chi_1 = 1 at all)."""
    e = theory.edge_of_chaos(activation, sigma_b2)
    if not math.isfinite(float(e.sigma_w2)):
        return ""
    b0 = theory.attracting_from(activation)
    where = (
        f"it attracts for sigma_b2 >= {b0:.4g}"
        if math.isfinite(b0)
        else "it attracts nowhere up to sigma_b2 = 100"
    )
    return (
        f": the edge-of-chaos curve (chi_1 = 1 at a fixed point of the length map, as Hayou et "
        f"al. 2019 draw it) passes through sigma_w2 = {float(e.sigma_w2):.6g} with "
        f"q* = {float(e.q_star):.6g}, but that fixed point repels (length-map slope "
        f"{float(e.slope):.4g}{' > 1' if e.slope > 1 else '; it moves away from above'}), "
        f"so a network started near it does not stay; {where}"
    )


def _run_critical(args: argparse.Namespace) -> int:
    if not math.isfinite(args.q_start) or args.q_start < 0:
        raise UserError(f"--q-start must be a finite variance >= 0, got {args.q_start:g}")
    w, q = theory.critical_point(args.activation, args.sigma_b2, args.q_start)
    w, q = float(w), float(q)
    if math.isnan(w):
        why = _repelling(args.activation, args.sigma_b2) or (
            " (chi_1 never equals 1 at an attracting fixed point)"
        )
        raise UserError(
            f"{args.activation} has no stable critical point at sigma_b2 = {args.sigma_b2:g}"
            f"{why} (see docs/theory.md)"
        )
    note = "q* = inf: chi_1 reaches 1 only as q* grows without bound" if math.isinf(q) else ""
    if bool(theory.edge_of_chaos(args.activation, args.sigma_b2).marginal):
        note = "(= --q-start: at the critical sigma_w2 every q is a fixed point)"
    print(f"# {args.activation}, sigma_b2 = {args.sigma_b2:g}: q* = {_num(q)}  {note}".rstrip())
    print("# critical sigma_w2 (chi_1 = 1):")
    print(_num(w))
    return 0


def _run_point(args: argparse.Namespace) -> int:
    if not math.isfinite(args.q_start) or args.q_start < 0:
        raise UserError(f"--q-start must be a finite variance >= 0, got {args.q_start:g}")
    mf = theory.mean_field(args.activation, args.sigma_w2, args.sigma_b2, args.q_start)
    d = mf.as_dict()
    if args.json:
        out = {k: (v if isinstance(v, str) or math.isfinite(v) else str(v)) for k, v in d.items()}
        print(json.dumps(out))
        return 0
    print(f"# {args.activation}, sigma_w2 = {args.sigma_w2:g}, sigma_b2 = {args.sigma_b2:g}")
    for k, v in d.items():
        print(f"{k:8s} {v if isinstance(v, str) else _num(v)}")
    return 0


def _run_line(args: argparse.Namespace) -> int:
    if not 2 <= args.points <= MAX_POINTS:
        raise UserError(f"--points must be an integer in 2..{MAX_POINTS}, got {args.points}")
    if not (math.isfinite(args.sigma_b2_max) and args.sigma_b2_max > 0):
        raise UserError(f"--sigma-b2-max must be a finite variance > 0, got {args.sigma_b2_max:g}")
    b, w = theory.critical_line(args.activation, args.sigma_b2_max, args.points)
    if np.any(np.isnan(w)):
        b0 = theory.attracting_from(args.activation)
        eoc = theory.edge_of_chaos(args.activation, b[np.isnan(w)])
        why = (
            f"; the edge-of-chaos fixed point (chi_1 = 1) exists there but repels, and "
            f"attracts from sigma_b2 = {b0:.4g} on"
            if np.all(np.isfinite(eoc.sigma_w2)) and np.isfinite(b0)
            else ""
        )
    if np.all(np.isnan(w)):
        raise UserError(
            f"{args.activation} has no stable critical point for sigma_b2 in "
            f"[0, {args.sigma_b2_max:g}]{why} (see docs/theory.md)"
        )
    print(f"# critical line of {args.activation}: chi_1 = 1")
    if np.any(np.isnan(w)):
        print(f"# nan: no stable critical point at that sigma_b2{why}")
    print(f"{'sigma_b2':>14s} {'sigma_w2':>18s}")
    for bi, wi in zip(b, w, strict=True):
        print(f"{_num(bi):>14s} {_num(wi):>18s}")
    return 0
