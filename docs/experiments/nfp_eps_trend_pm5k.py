"""Neural Fingerprinting (Dathathri et al. 2018, §3.2, Fig. 3): the trend over ε at the paper-mnist5k preset's size.

The points notebook 41 computes for its ε claims on ``paper-mnist5k`` (4000 embedded digits, ``nfp_mnist``, N 10,
ε 0.003 and 0.1, 3 fingerprint sets, 200 pre-test points, FGM/JSMA/BIM-a/BIM-b/CW-L2 with the preset's CW
settings), built with the notebook's own settings so that they share its cache entries, at the preset's 5 epochs
(315 optimiser steps) and at ``--epochs`` more (section 3b: 15). Prints per training length the AUC change from
ε 0.003 to 0.1 per attack with its interval over the sets, the nets' accuracy and fingerprint fit (mean D of the
true class; ≈ 0.995 where a net ignores its probes, learned below 0.9) at both ends, and whether the ε claims'
verdict would be inconclusive for unlearned fingerprints. ``docs/findings.md`` reads its output.

    python docs/experiments/nfp_eps_trend_pm5k.py [--epochs 5 15] [--sets 3]

About 10 min per point on 2 CPU cores (6 points per training length); ``DECOYLAB_CACHE`` keeps every point.
"""
import argparse
import dataclasses
import os
import time

os.environ.setdefault("DECOYLAB_BATCH", "1")  # no progress bars: the output is the table

from decoylab import data, train  # noqa: E402
from decoylab.cache import Cache  # noqa: E402
from decoylab.experiments import fingerprint_claims as nfc  # noqa: E402
from decoylab.experiments import fingerprint_trends as nft  # noqa: E402
from decoylab.experiments import fingerprints as nfx  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, nargs="+", default=[5], help="training lengths in epochs (default 5)")
parser.add_argument("--sets", type=int, default=3, help="fingerprint sets per end (default 3, the preset's)")
args = parser.parse_args()
if min(args.epochs) < 1 or args.sets < 1:
    parser.error(f"--epochs {args.epochs} --sets {args.sets}: both must be positive integers")

# params/paper-mnist5k/41_roc_curves.yaml and the notebook's defaults for what the preset leaves unset
EPS_ENDS, N, SEED = [0.003, 0.1], 10, 0
train_set = data.load("mnist5k", "train", n=None, seed=SEED)
test_set = data.load("mnist5k", "test", n=None, seed=SEED)
cw = {"max_iter": 100, "binary_search_steps": 5, "learning_rate": 0.01, "initial_const": 0.001}
base = nfx.SweepSettings(dx_mode="positive", dy_sign="code", weight=1.0, model_name="nfp_mnist",
                         train_config=train.TrainConfig(epochs=5, batch_size=64, optimizer="adam", lr=0.001),
                         seed=SEED, n_pretest=200, attack_names=["FGM", "JSMA", "BIM-a", "BIM-b", "CW-L2"],
                         overrides={"JSMA": {"gamma": 0.1}, "CW-L2": cw}, preset=nfx.attack_preset("mnist5k"))
cache = Cache()
start = time.time()
for epochs in args.epochs:
    settings = dataclasses.replace(base, train_config=dataclasses.replace(base.train_config, epochs=epochs))
    steps = epochs * -(-len(train_set.y) // base.train_config.batch_size)
    table = nft.trend_table(train_set, test_set, {f"{epochs} epochs ({steps} steps)": (f"{epochs}ep", settings)},
                            over="ε", grid=EPS_ENDS, n=N, eps=0.1, sets=args.sets, cache=cache)
    print(nft.sentences(table), flush=True)
    # the table already holds each end's fit, averaged over the sets
    fits = {EPS_ENDS[0]: float(table["fit at the smallest"].iloc[0]), EPS_ENDS[1]: float(table["fit at the largest"].iloc[0])}
    why = nfc.unlearned_ends(fits, "ε")
    print(f"- the ε claims at {epochs} epochs: " + (f"inconclusive: {why}" if why else
                                                     "both ends learned: judged on their intervals"),
          f"\n[{time.time() - start:.0f} s]\n", flush=True)
