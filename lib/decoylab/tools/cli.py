"""The ``decoylab`` command: ``decoylab run`` executes notebooks, ``decoylab bench`` times them,
``decoylab workshop`` prepares them for a room, ``decoylab list`` says what there is; ``--version``."""
from __future__ import annotations

import argparse
import logging
import sys

from decoylab.tools import runner

RUN_HELP = f"""\
Execute notebooks headless with papermill, using the parameters in params/<preset>/<notebook>.yaml.

Presets: {runner.PRESETS_HINT}.
Every YAML file is checked against its notebook's parameters cell and the library's ranges
before anything runs; a bad key, type or value stops the run with exit code 2 and leaves runs/
untouched. Outputs: runs/<preset>/<notebook>/<notebook>.ipynb (executed copy), figures/,
results.json; then runs/<preset>/summary.json, report.md and report.html.
Widgets are off in batch runs (INTERACTIVE is set to false).
Exit codes: 0 all notebooks ran, 1 a notebook failed (the others still run), 2 bad input or runs folder in use
by another run, 130 stopped by Ctrl-C or SIGTERM (running notebooks killed, queued ones cancelled).

examples:
  decoylab run                          every notebook, quick preset
  decoylab run --preset tiny --notebooks 00_tour
  decoylab run --preset paper --jobs 2 --force
  decoylab run --preset paper --executor ray --ray-address head-node:6379
"""


def build_parser() -> argparse.ArgumentParser:
    import decoylab

    parser = argparse.ArgumentParser(prog="decoylab", description="Decoy Lab: deception-based defenses study kit")
    parser.add_argument("--version", action="version", version=f"decoylab {decoylab.__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more output (each notebook's parameters file and output folder)")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="less output: -q only warnings and errors (interruptions, failed notebooks), -qq errors")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute notebooks headless from a YAML preset", description=RUN_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--preset", default="quick", help="folder under params/ (tiny, quick, paper); default quick")
    run.add_argument("--notebooks", nargs="+", metavar="NAME",
                     help="notebooks to run, by name or unique prefix (e.g. 00_tour or 10); default all")
    run.add_argument("--jobs", type=int, default=1, help="notebooks run in parallel processes; default 1")
    run.add_argument("--executor", default="local", choices=("local", "ray"),
                     help="local processes (default) or a Ray cluster: each notebook run, and the sweep points "
                          "inside notebooks 11 and 41, become Ray tasks (one GPU each when there are GPUs)")
    run.add_argument("--ray-address", default=None, metavar="ADDRESS",
                     help="with --executor ray: host:port, ray://host:port or auto; default: start a local Ray instance")
    run.add_argument("--data-root", default=None, metavar="DIR",
                     help="folder of data sets filled offline, one subfolder per data set (mnist/, cifar10/, svhn/ "
                          "in their own formats); default $DECOYLAB_DATA, else a download to ~/.cache/decoylab/data")
    run.add_argument("--force", action="store_true",
                     help="rerun notebooks that already completed with the same parameters")
    _add_dirs(run)

    bench = sub.add_parser("bench", help="print wall time and peak memory of a preset, first run and cached re-run",
                           description="Runs the preset twice with a fresh, empty cache (DECOYLAB_CACHE) into a "
                                       "temporary runs folder: first run (trains and attacks), then a forced "
                                       "re-run that finds everything cached. Prints both.")
    bench.add_argument("--preset", default=None, help="default quick (paper-mnist5k with --gpu)")
    bench.add_argument("--notebooks", nargs="+", metavar="NAME")
    bench.add_argument("--jobs", type=int, default=1)
    bench.add_argument("--gpu", action="store_true",
                       help="the GPU check instead (make gpu-check): device placement, the attack benchmark on CUDA "
                            "against ART's GPU path, and one paper notebook (--notebooks, default 20_attractors; "
                            "--preset default paper-mnist5k); refuses with exit 2 without CUDA")
    bench.add_argument("--rehearsal", action="store_true",
                       help="the paper preset (--preset, default paper) on full Fashion-MNIST staged as MNIST, one "
                            "notebook at a time: each one's wall time and peak memory on this CPU (make rehearsal)")
    bench.add_argument("--estimate", action="store_true",
                       help="with --rehearsal: time a few training steps and attacked inputs of each call and "
                            "estimate the full run from them (hours of a paper notebook in minutes)")
    bench.add_argument("--probe-points", type=int, default=None, metavar="N",
                       help="with --estimate: inputs each attack call is timed on (default: one batch, 128 on a CPU)")
    bench.add_argument("--probe-once", action="store_true",
                       help="with --estimate: time each attack set-up once per notebook and reuse its cost for "
                            "repeats on networks of the same architecture (sweeps)")
    bench.add_argument("--source", default=None,
                       help="with --rehearsal: folder of the four idx files (default /usr/share/datasets/fashion-mnist)")
    bench.add_argument("--out", default=None,
                       help="with --gpu or --rehearsal: folder for their files (default: a temporary one; rehearsal/)")
    _add_dirs(bench, runs=False)

    shop = sub.add_parser("workshop", help="write the notebooks with a preset's parameters to workshop/ and "
                                           "pre-build their caches, for a room of participants",
                          description="Writes workshop/<notebook>.ipynb (the preset's parameters filled in, widgets "
                                      "on, nothing executed), then runs the preset once headless so that every "
                                      "trained model and adversarial set is already in the cache.")
    shop.add_argument("--preset", default="quick")
    shop.add_argument("--notebooks", nargs="+", metavar="NAME")
    shop.add_argument("--out", default="workshop", help="default: workshop")
    shop.add_argument("--no-prebuild", action="store_true", help="only write the notebooks")
    shop.add_argument("--jobs", type=int, default=1)
    _add_dirs(shop, runs=False)

    from decoylab.tools.listing import KINDS

    listing = sub.add_parser("list", help="list notebooks, presets, datasets, attacks and defenses",
                             description="One line per item, from the registries the runner checks against.")
    listing.add_argument("kinds", nargs="*", metavar="KIND",
                         help=f"any of {', '.join(KINDS)}; default all")
    _add_dirs(listing, runs=False)
    return parser


def _add_dirs(p: argparse.ArgumentParser, runs: bool = True) -> None:
    p.add_argument("--notebooks-dir", default="notebooks", help="default: notebooks")
    p.add_argument("--params-dir", default="params", help="default: params")
    if runs:
        p.add_argument("--runs-dir", default="runs", help="default: runs")


def runner_log(message: str) -> None:
    """The runner's lines through ``logging`` (logger ``decoylab.run``), at a level read from their form: "error:"
    and failed notebooks ERROR, an interruption WARNING, "debug:" DEBUG, the rest (progress, the report) INFO."""
    logger = logging.getLogger("decoylab.run")
    if message.startswith("debug: "):
        logger.debug(message[len("debug: "):])
    elif message.startswith("error") or ": FAILED at " in message or message.endswith("notebook(s) failed"):
        logger.error(message)
    elif message.startswith("interrupted"):
        logger.warning(message)
    else:
        logger.info(message)


def _configure_logging(level: int) -> None:
    """The kit's own logger ``decoylab`` to stdout at ``level``; the root logger (papermill, ART) is left alone, so
    their INFO lines do not join the runner's."""
    logger = logging.getLogger("decoylab")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(min(max(logging.INFO + 10 * (args.quiet - args.verbose), logging.DEBUG), logging.ERROR))
    if args.command == "run":
        return runner.run(preset=args.preset, notebooks=args.notebooks, jobs=args.jobs, force=args.force,
                          notebooks_dir=args.notebooks_dir, params_dir=args.params_dir, runs_dir=args.runs_dir,
                          executor=args.executor, ray_address=args.ray_address, log=runner_log,
                          data_root=args.data_root)
    if args.command == "list":
        from decoylab.tools import listing

        unknown = [k for k in args.kinds if k not in listing.KINDS]
        if unknown:
            print(f"error: decoylab list {unknown[0]!r} is not known; allowed: {', '.join(listing.KINDS)}",
                  file=sys.stderr)
            return 2
        return listing.show(args.kinds or listing.KINDS, notebooks_dir=args.notebooks_dir, params_dir=args.params_dir)
    if args.command == "workshop":
        from decoylab.tools import workshop

        return workshop.prepare(preset=args.preset, out_dir=args.out, notebooks=args.notebooks,
                                notebooks_dir=args.notebooks_dir, params_dir=args.params_dir,
                                prebuild=not args.no_prebuild, jobs=args.jobs)
    if args.gpu and args.rehearsal:
        print("error: --gpu and --rehearsal are not allowed together; run one, then the other", file=sys.stderr)
        return 2
    if args.rehearsal:
        from decoylab.tools import rehearsal

        return rehearsal.main(source=args.source, out=args.out or "rehearsal", notebooks=args.notebooks,
                              preset=args.preset or "paper", notebooks_dir=args.notebooks_dir,
                              params_dir=args.params_dir, estimate=args.estimate, probe_points=args.probe_points,
                              probe_once=args.probe_once)
    if args.estimate or args.probe_points is not None or args.probe_once:
        print("error: --estimate, --probe-points and --probe-once go with --rehearsal", file=sys.stderr)
        return 2
    if args.gpu:
        from decoylab.tools import gpu_check

        if args.notebooks and len(args.notebooks) != 1:
            print(f"error: --notebooks {args.notebooks} is not allowed with --gpu; name one notebook",
                  file=sys.stderr)
            return 2
        return gpu_check.main(preset=args.preset or "paper-mnist5k",
                              notebook=(args.notebooks or ["20_attractors"])[0], out=args.out,
                              notebooks_dir=args.notebooks_dir, params_dir=args.params_dir)
    from decoylab.tools import bench

    return bench.main(preset=args.preset or "quick", notebooks=args.notebooks, jobs=args.jobs,
                      notebooks_dir=args.notebooks_dir, params_dir=args.params_dir)


if __name__ == "__main__":
    sys.exit(main())
