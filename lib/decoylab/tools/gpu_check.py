"""``decoylab bench --gpu`` (``make gpu-check``): the checks to run the day a CUDA GPU is at hand.

1. device placement: the default device is CUDA, a trained network lives there, each attack backend (the kit's
   engine and ART's ``PyTorchClassifier`` with ``device_type="gpu"``) runs on it and returns CPU tensors;
2. the attack benchmark (``python -m decoylab.tools.bench attacks``) on CUDA: the kit's engine against ART's GPU
   path, with the passes' floor;
3. one paper notebook (default ``20_attractors`` on ``paper-mnist5k``, which needs no download) timed with its
   peak memory: the host's resident set, and the GPU's memory in use as ``nvidia-smi`` samples it (the kernel is
   another process, so torch's own counters in this one cannot see it); the benchmark's peak is torch's
   ``max_memory_allocated``.

Without CUDA it stops before any work with exit code 2 and says why (a CPU-only torch build, or no visible GPU).
Every figure printed goes to ``<out>/gpu-check.json`` too, for ``docs/benchmarks.md``.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

#: Each backend's attack in the placement check (both backends have it).
PLACEMENT_ATTACK = "fgsm"


def cuda_problem() -> str | None:
    """Why this machine cannot run the GPU check, or None when torch sees a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return (f"no CUDA device: torch {torch.__version__} is a CPU-only build; install a CUDA wheel (README, "
                "'Running the paper presets')")
    return (f"no CUDA device: torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no GPU "
            f"(driver missing or too old, or CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")


def placement_checks(device: str) -> list[dict[str, Any]]:
    """Rows ``{check, ok, detail}``: where a network trained by the kit lives and where each backend attacks it.
    Runs on any ``device`` ("cpu" in the tests, "cuda" here) so that the code path is exercised without a GPU."""
    import torch

    from decoylab import attacks, config, data, train

    rows = []
    resolved = config.device(device)
    rows.append({"check": "config.device", "ok": resolved.type == device, "detail": str(resolved)})
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    model = train.train_or_load("mlp", tr.x, tr.y, 10, train.TrainConfig(epochs=1), seed=0, cache=None, log=None,
                                device=device)
    where = next(model.parameters()).device
    rows.append({"check": "trained network", "ok": where.type == device, "detail": str(where)})
    x, y = te.x[:64], te.y[:64]
    for backend in ("fast", "art"):
        try:
            result = attacks.run(PLACEMENT_ATTACK, model, x, y, backend=backend, eps=0.3)
        except Exception as err:  # report it as a failed check: the rest still runs
            rows.append({"check": f"attack backend {backend}", "ok": False, "detail": f"{type(err).__name__}: {err}"})
            continue
        ok = result.x_adv.device.type == "cpu" and torch.isfinite(result.x_adv).all().item()
        rows.append({"check": f"attack backend {backend}", "ok": bool(ok),
                     "detail": f"{PLACEMENT_ATTACK} success {result.success_rate:.2f} of {len(y)}, output on "
                               f"{result.x_adv.device}"})
    return rows


def gpu_memory_used_mib() -> float | None:
    """GPU memory in use on device 0 (MiB, every process) as ``nvidia-smi`` reports it; None without an answer."""
    command = [shutil.which("nvidia-smi") or "nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
               "--id=0"]
    try:
        return float(subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.split()[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None  # no nvidia-smi, or it answered nothing readable


class GpuMemorySampler:
    """The most GPU memory in use (``gpu_memory_used_mib``) while the ``with`` block runs, sampled every
    ``interval`` seconds; ``peak_mib`` stays None without ``nvidia-smi``."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak_mib = interval, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            used = gpu_memory_used_mib()
            if used is None:
                return  # leave the peak unknown
            self.peak_mib = max(self.peak_mib or 0.0, used)
            self._stop.wait(self.interval)

    def __enter__(self) -> "GpuMemorySampler":
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)


def main(n: int = 500, preset: str = "paper-mnist5k", notebook: str = "20_attractors", out: str | None = None,
         notebooks_dir: str = "notebooks", params_dir: str = "params", device: str = "cuda",
         attack_names: list[str] | None = None) -> int:
    """The three checks on ``device``; ``"cpu"`` (no refusal, no GPU figures) only lets a test run the whole
    script on a machine without a GPU, with fewer ``attack_names`` and a small preset."""
    if device not in ("cuda", "cpu"):
        print(f"error: device={device!r} is not allowed; device must be 'cuda' (the check) or 'cpu' (its test)",
              file=sys.stderr)
        return 2
    if attack_names is not None:
        from decoylab.tools.bench import both_backends as bench_attack_names

        comparable = bench_attack_names()
        unknown = [a for a in attack_names if a not in comparable]
        if unknown:
            print(f"error: attack_names {unknown} are not allowed; allowed: attacks with both backends "
                  f"({', '.join(comparable)})", file=sys.stderr)
            return 2
    if device == "cuda":
        problem = cuda_problem()
        if problem:
            print(f"error: {problem}; nothing was run", file=sys.stderr)
            return 2
    import torch

    from decoylab.tools import bench

    out_dir = Path(out or tempfile.mkdtemp(prefix="decoylab-gpu-check-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    on_gpu = device == "cuda"
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0) if on_gpu else None, "device": device,
                              "torch": torch.__version__, "cuda": torch.version.cuda}
    print(f"GPU check on {report['gpu'] or device} (torch {report['torch']}, CUDA {report['cuda']}); "
          f"files in {out_dir}")

    print("\n1. device placement")
    report["placement"] = placement_checks(device)
    for row in report["placement"]:
        print(f"  {'ok ' if row['ok'] else 'BAD'} {row['check']:<24} {row['detail']}")

    print(f"\n2. attack benchmark on {device}, {n} images: the kit's engine against ART's {device} path")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    bench_rc = bench.attacks_main(n, names=attack_names, json_path=str(out_dir / "attacks.json"), repeats=1)
    report["attacks"] = json.loads((out_dir / "attacks.json").read_text()) if bench_rc == 0 else None
    report["attacks_peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20) if on_gpu else None

    print(f"\n3. {notebook} with preset {preset}")
    env = {**os.environ, "DECOYLAB_CACHE": str(out_dir / "cache"), "DECOYLAB_DEVICE": device}
    baseline_mib = None
    if on_gpu:  # what this process and others already hold, so that the notebook's own share can be told
        torch.cuda.empty_cache()
        baseline_mib = gpu_memory_used_mib()
    with GpuMemorySampler() if on_gpu else contextlib.nullcontext() as sampler:
        rc, seconds, peak_mib = bench._timed_run(["--preset", preset, "--notebooks", notebook, "--notebooks-dir",
                                                  notebooks_dir, "--params-dir", params_dir, "--runs-dir",
                                                  str(out_dir / "runs")], env)
    gpu_mib = sampler.peak_mib if sampler is not None else None
    report["notebook"] = {"preset": preset, "notebook": notebook, "exit_code": rc, "seconds": round(seconds, 1),
                          "peak_rss_mib": round(peak_mib), "peak_gpu_mib": gpu_mib,
                          "gpu_mib_in_use_before": baseline_mib}
    print(f"  exit {rc}, {seconds:.0f} s wall, peak resident memory {peak_mib:.0f} MiB"
          + (f", GPU memory in use at most {gpu_mib:.0f} MiB (nvidia-smi, device 0; {baseline_mib or 0:.0f} MiB in use "
             "before it started)" if gpu_mib is not None else ""))
    (out_dir / "gpu-check.json").write_text(json.dumps(report, indent=1))
    print(f"\nwritten: {out_dir / 'gpu-check.json'} (put its figures in docs/benchmarks.md)")
    placement_ok = all(row["ok"] for row in report["placement"])
    return 0 if placement_ok and bench_rc == 0 and rc == 0 else 1
