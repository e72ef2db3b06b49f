"""``decoylab bench``: wall time and peak memory of a preset, cold and fully cached.

Peak memory is the largest resident set of any process in the run's tree (runner,
workers, kernels), as Linux reports it through ``wait4``.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def _timed_run(args: list[str], env: dict[str, str]) -> tuple[int, float, float]:
    """(exit code, seconds, peak RSS in MiB of the largest process in the tree)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "decoylab", "run", *args], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main(preset: str, notebooks: list[str] | None, jobs: int, notebooks_dir: str, params_dir: str) -> int:
    with tempfile.TemporaryDirectory(prefix="decoylab-bench-") as tmp:
        env = {**os.environ, "DECOYLAB_CACHE": str(Path(tmp) / "cache")}
        runs = Path(tmp) / "runs"
        args = ["--preset", preset, "--jobs", str(jobs), "--notebooks-dir", notebooks_dir,
                "--params-dir", params_dir, "--runs-dir", str(runs)]
        if notebooks:
            args += ["--notebooks", *notebooks]
        rc1, cold_s, cold_mem = _timed_run(args, env)
        cold = json.loads((runs / preset / "summary.json").read_text())["notebooks"] if rc1 != 2 else {}
        rc2, warm_s, warm_mem = _timed_run(args + ["--force"], env)
        warm = json.loads((runs / preset / "summary.json").read_text())["notebooks"] if rc2 != 2 else {}
    print(f"\nbenchmark: preset {preset!r}, {os.cpu_count()} CPU cores, jobs {jobs}")
    print(f"{'notebook':<28}{'first run s':>14}{'cached s':>12}")
    for name in cold:
        print(f"{name:<28}{cold[name]['seconds'] or 0:>14.1f}{(warm.get(name) or {}).get('seconds') or 0:>12.1f}")
    print(f"{'whole preset (wall)':<28}{cold_s:>14.1f}{warm_s:>12.1f}")
    print(f"{'peak memory MiB':<28}{cold_mem:>14.0f}{warm_mem:>12.0f}")
    print(f"cached re-run / first run: {warm_s / cold_s:.0%}")
    return rc1 or rc2


def _mean_seconds(call: Callable[[], Any], repeats: int, warmup: int = 0) -> float:
    """Mean wall time of ``call()`` over ``repeats`` calls, after ``warmup`` untimed ones (allocator, kernels)."""
    for _ in range(warmup):
        call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def _counting(model):
    """``model`` behind a wrapper that counts the images it passes forward and the images each
    backward pass through its output carries (DeepFool's K class gradients are K backward passes).
    The counts live outside the module, so copies of it (the CW line search's channels-last copy)
    count into the same totals."""
    import torch

    images = {"forward": 0, "backward": 0}

    def count_backward(grad):
        images["backward"] += len(grad)

    class Counted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            images["forward"] += len(x)
            out = self.model(x)
            if out.requires_grad:
                out.register_hook(count_backward)
            return out

    return Counted().eval(), images


def both_backends() -> list[str]:
    """The attacks that both backends have (the kit's engine and ART's), which the attack benchmark compares."""
    from decoylab.attacks.registry import REGISTRY

    return [k for k, e in REGISTRY.items() if "art" in e.backends]


def attacks_main(n: int = 500, names: list[str] | None = None, json_path: str | None = None,
                 model_name: str = "honey_small_conv", settings: dict | None = None, repeats: int = 1) -> int:
    """Time every attack that both backends have on ``n`` correctly classified mnist5k test images.

    For each: seconds, success rate, mean L2 and L∞ per backend, the art/fast speed ratio, and the
    floor: the forward and backward passes the run made (counted in images by ``_counting``), timed
    as plain passes over the same images in the batches ``attacks.run`` uses by default.
    ``settings`` (the same for both backends) override the attacks' defaults, e.g. a shorter EAD.
    ``repeats`` > 1 runs the backends in turn that many times (fast, art, fast, art, ...), re-timing
    the floor's passes before each turn, and reports medians: this machine's speed drifts by up to a
    third within minutes, and a ratio of two runs far apart in time inherits that drift.
    """
    import torch
    import torch.nn.functional as F

    from decoylab import attacks, config, data, train
    from decoylab.attacks.registry import REGISTRY, checked_settings
    from decoylab.cache import Cache
    from decoylab.fileio import atomic_write_text

    if repeats < 1:
        print(f"error: --repeats {repeats} is not allowed; --repeats must be >= 1")
        return 2
    names = names or both_backends()
    unknown = [k for k in names if k not in REGISTRY]
    if unknown:
        print(f"error: unknown attack(s) {unknown}; allowed: {', '.join(REGISTRY)}")
        return 2
    try:  # --set checked against every attack's parameters and ranges before any data is read
        for name in names:
            checked_settings(name, **(settings or {}))
    except ValueError as err:
        print(f"error: --set: {err}")
        return 2
    tr, te = data.load("mnist5k", "train"), data.load("mnist5k", "test")
    model = train.train_or_load(model_name, tr.x, tr.y, 10, train.TrainConfig(epochs=1), seed=0, cache=Cache(), log=None)
    idx = train.correct_subset(model, te.x, te.y, n, seed=0)
    x, y = te.x[idx], te.y[idx]

    batch = config.batch_size(next(model.parameters()).device)  # what attacks.run uses by default

    def pass_seconds(with_gradient: bool, passes: int = 3) -> float:
        """Seconds of one pass over all the images: forward+backward to the input, or forward alone."""
        def one_pass() -> None:
            for xb, yb in zip(x.split(batch), y.split(batch)):
                if with_gradient:
                    xin = xb.clone().requires_grad_(True)
                    torch.autograd.grad(F.cross_entropy(model(xin), yb), xin)
                else:
                    with torch.no_grad():
                        model(xb)

        return _mean_seconds(one_pass, passes)

    one_pass, one_forward = pass_seconds(True), pass_seconds(False)
    rows = []
    medians = f"; medians of {repeats} turns, fast and art in turn" if repeats > 1 else ""
    print(f"attack benchmark: {len(y)} mnist5k test images, {model_name}, {os.cpu_count()} CPU cores, "
          f"batches of {batch}, one forward+backward pass {one_pass:.3f} s, one forward pass {one_forward:.3f} s"
          f"{medians}")
    print(f"{'attack':<10}{'backend':<8}{'seconds':>9}{'success':>9}{'mean L2':>9}{'mean Linf':>10}"
          f"{'steps':>7}{'floor s':>9}{'/floor':>8}  art/fast{' (range)' if repeats > 1 else ''}")
    for name in names:
        entry = REGISTRY[name]
        kw = {"targeted": True} if entry.targeting == "always" else {}
        kw.update(settings or {})
        if name == "jsma":
            kw["saliency"] = "target_top2"  # the variant ART implements: matched settings
        backends = [b for b in ("fast", "art") if b in entry.backends]
        turns = {b: [] for b in backends}
        for turn in range(repeats):
            # The floor's unit, timed beside the runs it prices (the first turn reuses the header's).
            passes = (one_pass, one_forward) if turn == 0 else (pass_seconds(True), pass_seconds(False))
            for backend in backends:
                counted, images = _counting(model)
                start = time.perf_counter()
                res = attacks.run(name, counted, x, y, backend=backend, seed=0, **kw)
                seconds = time.perf_counter() - start
                # The floor: the forward and backward passes this run made, in images, timed as plain
                # full passes over the same images (a backward costs a forward+backward minus a forward).
                floor = (images["forward"] * passes[1] + images["backward"] * (passes[0] - passes[1])) / len(y)
                turns[backend].append({"seconds": seconds, "floor": floor, "res": res, "images": dict(images)})
        for backend in backends:
            last = turns[backend][-1]
            res, images = last["res"], last["images"]
            seconds = statistics.median(t["seconds"] for t in turns[backend])
            floor = statistics.median(t["floor"] for t in turns[backend])
            row = {"attack": name, "backend": backend, "n": len(y), "seconds": round(seconds, 3),
                   "success_rate": round(res.success_rate, 4), "mean_l2": round(float(res.l2.mean()), 4),
                   "mean_linf": round(float(res.linf.mean()), 4), "grad_steps": res.grad_steps,
                   "forward_images": images["forward"], "backward_images": images["backward"],
                   "floor_seconds": round(floor, 3), "repeats": repeats,
                   "seconds_each": [round(t["seconds"], 3) for t in turns[backend]]}
            ratio = ""
            if backend == "art" and "fast" in turns:
                # Each turn's ART time over the fast time next to it, then the median of those ratios.
                ratios = [a["seconds"] / f["seconds"] for a, f in zip(turns["art"], turns["fast"])]
                row["art_over_fast"] = round(statistics.median(ratios), 2)
                row["art_over_fast_each"] = [round(r, 2) for r in ratios]
                ratio = f"{row['art_over_fast']:.1f}x"
                if repeats > 1:
                    ratio += f" ({min(ratios):.1f}-{max(ratios):.1f})"
            rows.append(row)
            above_floor = seconds / floor if floor > 0 else float("nan")  # no pass counted: no floor
            print(f"{name:<10}{backend:<8}{seconds:>9.2f}{row['success_rate']:>9.2f}{row['mean_l2']:>9.2f}"
                  f"{row['mean_linf']:>10.2f}{res.grad_steps:>7}{floor:>9.2f}{above_floor:>7.1f}x  {ratio}",
                  flush=True)
    if json_path:
        atomic_write_text(Path(json_path), json.dumps({"one_pass_seconds": one_pass, "one_forward_seconds": one_forward, "rows": rows}, indent=1))
    return 0


BATCH_MODELS = ("honey_small_conv", "deepsec_mnist", "nfp_mnist", "luring_mnist")


def batches_main(sizes: list[int], n: int = 1024, json_path: str | None = None) -> int:
    """Seconds per 1000 images of a forward pass (inference) and a forward+backward pass to the input
    (one attack step) of the kit's MNIST nets, per batch size, on this machine's default device:
    the measurement behind ``config.batch_size``."""
    import torch

    from decoylab import config, models
    from decoylab.fileio import atomic_write_text

    if not sizes or any(b < 1 for b in sizes):
        print(f"error: --sizes {sizes} is not allowed; give batch sizes >= 1")
        return 2
    dev = config.device()
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(dev)
    print(f"batch benchmark: {n} random 28x28 images, {dev}, {torch.get_num_threads()} threads; seconds per 1000 "
          f"images (default batch here: {config.batch_size(dev)})")
    print(f"{'model':<18}{'pass':<10}" + "".join(f"{b:>8}" for b in sizes) + f"{'best':>8}")
    rows = []
    for name in BATCH_MODELS:
        model = models.build(name, (1, 28, 28), 10).to(dev).eval().requires_grad_(False)
        for kind in ("forward", "fwd+bwd"):
            def one_pass(b: int) -> None:
                for xb in x.split(b):
                    if kind == "forward":
                        with torch.no_grad():
                            model(xb)
                    else:
                        xin = xb.clone().requires_grad_(True)
                        torch.autograd.grad(model(xin).sum(), xin)

            seconds = {}
            for b in sizes:
                seconds[b] = _mean_seconds(lambda: one_pass(b), 3, warmup=1) * 1000 / n
            best = min(seconds, key=seconds.get)
            rows.append({"model": name, "pass": kind, "seconds_per_1000": seconds, "best_batch": best})
            print(f"{name:<18}{kind:<10}" + "".join(f"{seconds[b]:>8.3f}" for b in sizes) + f"{best:>8}", flush=True)
    if json_path:
        atomic_write_text(Path(json_path), json.dumps({"device": str(dev), "rows": rows}, indent=1))
    return 0


def training_main(batch_sizes: list[int], steps: int = 10) -> int:
    """Milliseconds per training step (forward, backward to the weights, Adam) of the kit's MNIST nets
    in PyTorch's default memory layout and in channels-last, on the CPU: the measurement behind
    ``train.fit`` switching to channels-last there. Batch 256 is NeuralFP's step at N = 3 (B·(N + 1))."""
    import torch
    import torch.nn.functional as F

    from decoylab import models

    print(f"training step, ms (CPU, {torch.get_num_threads()} threads, Adam)")
    print(f"{'model':<18}{'batch':>6}{'default':>9}{'ch-last':>9}{'speed-up':>10}")
    gen = torch.Generator().manual_seed(0)
    for name in BATCH_MODELS:
        for b in batch_sizes:
            x, y = torch.rand(b, 1, 28, 28, generator=gen), torch.randint(0, 10, (b,), generator=gen)
            ms = {}
            for layout in (torch.contiguous_format, torch.channels_last):
                torch.manual_seed(0)
                model = models.build(name, (1, 28, 28), 10).to(memory_format=layout).train()
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)

                def step() -> None:
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(model(x), y).backward()
                    opt.step()

                ms[layout] = _mean_seconds(step, steps, warmup=2) * 1000
            default, last = ms[torch.contiguous_format], ms[torch.channels_last]
            print(f"{name:<18}{b:>6}{default:>9.1f}{last:>9.1f}{default / last:>9.2f}x", flush=True)
    return 0


# The nets JSMA's pair benchmark attacks, trained as their notebooks train them (20's quick preset, the tour).
JSMA_PAIR_MODELS = {
    "deepsec_mnist": dict(epochs=5, batch_size=100, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True),
    "honey_small_conv": dict(epochs=1),
}


def jsma_pairs_main(n: int = 50, model_name: str = "deepsec_mnist") -> int:
    """JSMA with the paper's pairwise saliency (the Attractors and NeuralFP presets), on ``n`` correctly
    classified mnist5k test images: the pruned pair search of ``attacks.jsma._best_pair`` against
    scoring all F×F pairs, timed on the same images; the adversarial examples must be identical.
    How much is pruned depends on how concentrated the net's input gradients are."""
    import torch

    from decoylab import attacks, data, train
    from decoylab.attacks import jsma
    from decoylab.cache import Cache

    if model_name not in JSMA_PAIR_MODELS:
        print(f"error: --model {model_name!r} is not allowed; choose one of {', '.join(JSMA_PAIR_MODELS)}")
        return 2
    tr, te = data.load("mnist5k", "train"), data.load("mnist5k", "test")
    model = train.train_or_load(model_name, tr.x, tr.y, 10, train.TrainConfig(**JSMA_PAIR_MODELS[model_name]), seed=0,
                                cache=Cache(), log=None)
    idx = train.correct_subset(model, te.x, te.y, n, seed=0)
    x, y = te.x[idx], te.y[idx]

    pruned, full_matrix, out = jsma._best_pair, jsma._best_pair_full, {}
    print(f"JSMA pair search: {n} mnist5k test images, {model_name}, preset deepsec_mnist (θ 1, γ 0.1, "
          f"pairwise saliency), {torch.get_num_threads()} threads")
    print(f"{'pair search':<14}{'seconds':>9}{'success':>9}{'mean L0':>9}")
    try:
        for label, search in (("all F x F", full_matrix), ("pruned", pruned)):
            jsma._best_pair = search
            start = time.perf_counter()
            r = attacks.run("jsma", model, x, y, targeted=True, target="random", preset="deepsec_mnist", seed=0)
            out[label] = (time.perf_counter() - start, r)
            print(f"{label:<14}{out[label][0]:>9.2f}{r.success_rate:>9.2f}{float(r.l0.float().mean()):>9.1f}", flush=True)
    finally:
        jsma._best_pair = pruned
    same = torch.equal(out["all F x F"][1].x_adv, out["pruned"][1].x_adv)
    print(f"speed-up {out['all F x F'][0] / out['pruned'][0]:.1f}x; identical adversarial examples: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m decoylab.tools.bench",
                                     description="Benchmarks: 'notebooks' times a preset (also `decoylab bench`); "
                                                 "'attacks' compares the fast and ART attack backends; "
                                                 "'batches' times the nets per batch size; 'training' times a "
                                                 "training step per memory layout; 'jsma-pairs' times JSMA's "
                                                 "pruned pair search against all pairs.")
    sub = parser.add_subparsers(dest="what", required=True)
    nb = sub.add_parser("notebooks")
    nb.add_argument("--preset", default="quick")
    nb.add_argument("--jobs", type=int, default=1)
    at = sub.add_parser("attacks")
    at.add_argument("--n", type=int, default=500, help="correctly classified test images (default 500)")
    at.add_argument("--attacks", nargs="+", help="default: every attack that both backends have")
    at.add_argument("--json", help="also write the table as JSON to this path")
    at.add_argument("--repeats", type=int, default=1,
                    help="run fast and art in turn this many times and report medians (default 1)")
    at.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE",
                    help="attack parameters for both backends, e.g. max_iter=50 binary_search_steps=3")
    bt = sub.add_parser("batches")
    bt.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256, 512, 1024])
    bt.add_argument("--json", help="also write the table as JSON to this path")
    tp = sub.add_parser("training")
    tp.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    jp = sub.add_parser("jsma-pairs")
    jp.add_argument("--n", type=int, default=50, help="correctly classified test images (default 50)")
    jp.add_argument("--model", default="deepsec_mnist", help="deepsec_mnist (default) or honey_small_conv")
    args = parser.parse_args()
    if args.what == "jsma-pairs":
        if args.n < 1:
            parser.error(f"--n {args.n} is not allowed; --n must be >= 1")
        sys.exit(jsma_pairs_main(args.n, args.model))
    if args.what == "training":
        if min(args.batch_sizes) < 1:
            parser.error(f"--batch-sizes {args.batch_sizes} is not allowed; every size must be >= 1")
        sys.exit(training_main(args.batch_sizes))
    if args.what == "batches":
        sys.exit(batches_main(args.sizes, json_path=args.json))
    if args.what == "notebooks":
        sys.exit(main(args.preset, None, args.jobs, "notebooks", "params"))
    if args.n < 1:
        parser.error(f"--n {args.n} is not allowed; --n must be >= 1")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r} is not allowed; write NAME=VALUE, e.g. max_iter=50")
        overrides[key] = json.loads(value) if value[:1] in "-0123456789[{tfn" else value  # numbers, lists, true/false
    sys.exit(attacks_main(args.n, args.attacks, args.json, settings=overrides, repeats=args.repeats))
