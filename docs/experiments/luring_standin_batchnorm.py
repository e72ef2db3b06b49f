"""Why Luring's CIFAR-10 target M sat at chance level on the paper-preset tier's stand-in images.

Bernhard, Moellic, Dutertre, "Luring of Transferable Adversarial Perturbations in the Black-Box Paradigm",
Table 4: M is a VGG-like network with BatchNorm after every convolution and dense layer. The tier
(``tests/test_paper_presets.py``) trains it for a handful of optimiser steps on synthetic images, and the notebook
stopped at its chance-level guard. This script separates the two possible causes: the weights did not learn, or
they did and only BatchNorm's running statistics (used in eval mode; momentum 0.1, so about ten steps of memory
while the weights still move fast) lag behind. It trains M for a few epochs and scores it three ways on held-out
stand-ins: in eval mode (what the notebook does), with each batch's own statistics (train mode, no update), and in
eval mode after re-estimating the running statistics with the final weights on the training images.

    python docs/experiments/luring_standin_batchnorm.py [--epochs 4] [--batch-size 32] [--tint 100]

The stand-ins are those of ``tests/standins.py``: uniform noise in 0..59, the top four rows set to 25 x class; with
``--tint L`` every pixel also gets L/10 x class added (a signal the network learns in a few steps).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from decoylab import models, train


def stand_ins(n: int, seed: int, tint: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    x = rng.integers(0, 60, (n, 3, 32, 32)).astype(np.int32)
    x[..., :4, :] = (labels * 25).reshape(-1, 1, 1, 1)
    x = np.clip(x + (labels * tint // 10).reshape(-1, 1, 1, 1), 0, 255)
    return torch.from_numpy(x.astype(np.float32) / 255), torch.from_numpy(labels)


def batch_statistics_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Accuracy with each batch normalised by its own statistics; the running statistics are left as they were."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    with torch.no_grad():
        correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                      for i in range(0, len(x), batch_size))
    model.load_state_dict(saved)
    model.eval()
    return correct / len(x)


def reestimate_running_statistics(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over the passes below
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-train", type=int, default=150)
    parser.add_argument("--tint", type=int, default=100, help="class-coded tint added to every pixel (0: none)")
    args = parser.parse_args()
    for name, value in vars(args).items():
        if value < 0 or (value == 0 and name != "tint"):
            parser.error(f"--{name.replace('_', '-')} must be {'>= 0' if name == 'tint' else '>= 1'}, got {value}")
    torch.manual_seed(0)
    x_train, y_train = stand_ins(args.n_train, 0, args.tint)
    x_test, y_test = stand_ins(200, 1, args.tint)
    model = models.REGISTRY["luring_vgg_wide"]((3, 32, 32), 10)
    start = time.perf_counter()
    train.fit(model, x_train, y_train, train.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3),
              progress=False)
    steps = args.epochs * -(-args.n_train // args.batch_size)
    print(f"luring_vgg_wide, {args.n_train} stand-ins (tint {args.tint}), {steps} steps at batch {args.batch_size}, "
          f"Adam 1e-3, {time.perf_counter() - start:.0f} s; accuracy on 200 held-out stand-ins:")
    print(f"  eval mode (running statistics)        {train.accuracy(model, x_test, y_test):.3f}")
    print(f"  batch statistics                      {batch_statistics_accuracy(model, x_test, y_test, 50):.3f}")
    reestimate_running_statistics(model, x_train, args.batch_size)
    print(f"  eval mode, statistics re-estimated    {train.accuracy(model, x_test, y_test):.3f}")


if __name__ == "__main__":
    main()
