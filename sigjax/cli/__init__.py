"""The `sigjax` command: run studies, list them, query the theory.

User mistakes (UserError, bad arguments) print one `sigjax: error: …` line on stderr and exit
with code 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import sys

# The same as `import sigjax` applies (one JAX host device per core, before JAX is imported).
from sigjax._devices import use_all_cores as _use_all_cores


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"sigjax: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sigjax", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run a study (default: sigmoid_convergence)")
    r.add_argument(
        "study",
        nargs="?",
        default=None,
        help="a study's name (sigjax list) or a study file, e.g. my_study.py (STUDY = Study(...))",
    )
    r.add_argument("--out", help="run directory (default: runs/STUDY)")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a config value, e.g. model.width=64 (repeatable)",
    )
    r.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=VALUES",
        help="sweep a key: a,b,c | range(n) | linspace(a,b,n) | logspace(a,b,n)",
    )
    r.add_argument(
        "--zip",
        action="append",
        nargs="+",
        default=[],
        metavar="KEY=VALUES",
        help="sweep several keys in lockstep, e.g. --zip model.depth=2,4 model.width=64,32",
    )
    r.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    r.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run of the same command from its checkpoint",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="memory budget for a chunk of members, e.g. 4G (default: a safe share)",
    )
    dist = r.add_argument_group("several processes or hosts (jax.distributed)")
    dist.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    dist.add_argument("--num-processes", type=int, metavar="N")
    dist.add_argument("--process-id", type=int, metavar="I")
    r.add_argument(
        "--plan",
        action="store_true",
        help="print how the sweep would run (groups, chunks, memory, strategy and why) and exit",
    )
    size = r.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="preset",
        action="store_const",
        const="quick",
        help="the study's small CPU setting (where it has one)",
    )
    size.add_argument(
        "--full",
        dest="preset",
        action="store_const",
        const="full",
        help="the study's full (GPU-sized) setting (where it has one)",
    )
    r.set_defaults(func=_run)

    sh = sub.add_parser("show", help="summarise a run directory")
    sh.add_argument("dir")
    sh.add_argument("--plot", action="store_true", help="write DIR/figures/show_overview.png")
    sh.set_defaults(func=_show)

    b = sub.add_parser("bench", help="throughput against this machine's matmul peak and PyTorch")
    b.add_argument(
        "--workload",
        action="append",
        metavar="NAME",
        help="W, W_small, W_large, tiny or all (repeatable; default W)",
    )
    b.add_argument("--steps", type=int, help="steps per model (default: the workload's)")
    b.add_argument("--members", type=int, help="models, a multiple of 16 (default: the workload's)")
    b.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    b.add_argument(
        "--compare",
        action="append",
        default=[],
        choices=["torch"],
        help="also run the workload in PyTorch (pip install -e .[bench])",
    )
    b.add_argument(
        "--precision",
        choices=["float32", "bf16"],
        default="float32",
        help="bf16: bf16 matmuls, float32 params; also measures float32 and the difference",
    )
    b.set_defaults(func=_bench)

    ls = sub.add_parser("list", help="the studies and what each makes")
    ls.set_defaults(func=_list)

    from sigjax.cli import theory_command as theory_cli

    th = theory_cli.add_parser(sub)
    (theory_sub,) = (a for a in th._actions if isinstance(a, argparse._SubParsersAction))
    for leaf in (r, sh, ls, *theory_sub.choices.values()):
        _add_import(leaf)
    return p


def _add_import(p: argparse.ArgumentParser) -> None:
    """`--import MODULE_OR_FILE` on a command: imported before it runs, so the activations,
    optimizers and studies it registers are in place."""
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="import a module or a .py file first (its registrations; repeatable)",
    )
    p.set_defaults(func=_importing(p.get_default("func")))


def _importing(func):
    def run(args) -> int:
        import experiments

        for spec in args.imports:
            experiments.import_user(spec)
        return func(args)

    return run


def _parse_sets(items: list[str]) -> dict[str, str]:
    from sigjax import config
    from sigjax.errors import UserError

    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r} must look like key=value")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in out:
            raise UserError(f"{key} is given twice (--set and --set); give each key once")
        out[key] = config.parse_value(key, value)
    return out


def _distributed(args) -> None:
    """Join a multi-process run (one process per host, or several on one host)."""
    from sigjax.errors import UserError

    given = [args.coordinator, args.num_processes, args.process_id]
    if all(v is None for v in given):
        return
    if any(v is None for v in given):
        raise UserError("--coordinator, --num-processes and --process-id go together")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
        raise UserError(f"--process-id must be in [0, {args.num_processes})")
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts need it
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def _run(args) -> int:
    import experiments
    from sigjax.engine import grid
    from sigjax.study import run_study

    _distributed(args)
    study = experiments.get(args.study or experiments.DEFAULT)
    sets = _parse_sets(args.set)
    axes = [("--grid", *grid.parse(g)) for g in args.grid]
    axes += [("--zip", *grid.parse_zip(z)) for z in args.zip]
    # A key given by two of the user's flags is a mistake (the study's own axes are replaced).
    grid.check_distinct([*(("--set", k) for k in sets), *((flag, k) for flag, k, _ in axes)])
    grids = {k: values for _, k, values in axes}
    study = study.preset(args.preset).with_overrides(sets, grids)
    from sigjax.engine import plan, sweep
    from sigjax.errors import UserError

    max_memory = plan.parse_bytes(args.max_memory) if args.max_memory else None
    if args.plan:
        from sigjax.study import uses_sweep

        if not uses_sweep(study):
            raise UserError(f"--plan: study {study.name} runs its own computation, not a sweep")
        budget = max_memory or plan.default_budget()
        sweep.check(study.config, study.axes())
        print(plan.describe(sweep.make_plan(study.config, study.axes(), budget), budget))
        return 0
    progress = not args.quiet and sys.stderr.isatty()
    ds, path, headline = run_study(
        study,
        args.out,
        overwrite=args.overwrite,
        resume=args.resume,
        progress=progress,
        max_memory=max_memory,
    )
    import jax

    if jax.process_index() > 0:
        print(f"process {jax.process_index()}: done; process 0 writes {path}")
        return 0
    print(f"wrote {path}/ ({', '.join(sorted(p.name for p in path.iterdir()))})")
    table = path / "table.md"
    if table.exists():
        print(table.read_text())
    print(
        f"wall time {ds.attrs['wall_time_s']:.1f} s on {ds.attrs['device_count']} "
        f"{ds.attrs['device_kind']} device(s)"
    )
    return 0


def _show(args) -> int:
    from sigjax.analysis import report

    ds, meta = report.load_run(args.dir)
    threshold = report.loss_threshold(meta)
    print(report.describe(ds, threshold), end="")
    if args.plot:
        paths = report.standard_figures(ds, args.dir)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _bench(args) -> int:
    import json

    from sigjax import bench
    from sigjax.errors import UserError

    names = args.workload or ["W"]
    if "all" in names:
        names = [n for n in names if n != "all"] + [n for n in bench.DEFAULT if n not in names]
    if args.members is not None and (args.members < 16 or args.members % 16):
        raise UserError(f"--members must be a positive multiple of 16, got {args.members}")
    seeds = args.members // 16 if args.members else None
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else print
    result = bench.run(names, args.steps, seeds, tuple(args.compare), args.precision, log)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(bench.table(result))
    return 0


def _list(args) -> int:
    import experiments

    for name in experiments.STUDIES:  # the built-in studies, then those registered
        print(f"{name:24s} {experiments.get(name).description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    _use_all_cores()
    from sigjax.errors import Fault, UserError, first_line, one_line
    from sigjax.study import Interrupted

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Interrupted as e:
        print(f"sigjax: {e}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except UserError as e:
        print(f"sigjax: error: {first_line(e)}", file=sys.stderr)
        return 2
    except Fault as e:
        print(f"sigjax: error: {first_line(e)}", file=sys.stderr)
        return 1
    except OSError as e:  # the file system or the machine refused (full, read-only, ...)
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"sigjax: error: {e.strerror or one_line(e)}{where}", file=sys.stderr)
        return 1
    except MemoryError:
        print("sigjax: error: out of memory; try a smaller --max-memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sigjax: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
