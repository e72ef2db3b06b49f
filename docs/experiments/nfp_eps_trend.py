"""Neural Fingerprinting (Dathathri et al. 2018, §3.2, Fig. 3): why CW-L2's AUC rose with ε in the kit's runs.

Notebook 41's sections 3b and 3c (``decoylab.experiments.fingerprint_trends``) at the two ends of the paper-mnist5k
ε grid, on a quick-sized run: 2000 embedded digits, N 3, 100 pre-test points, BIM-a and CW-L2 (the quick preset's
CW settings), 3 fingerprint sets; the trend by training length on [0, 1] inputs and on the authors' [-0.5, 0.5];
then one fingerprint set's net at ε 0.003 trained longer, and at ε 0.01 and 0.03, with its fit (mean D of the
true class on the test digits). ``docs/findings.md`` reads the output. About 40 min on 2 CPU cores from an empty
cache (``DECOYLAB_CACHE`` keeps every net and attack):

    python docs/experiments/nfp_eps_trend.py
"""
import dataclasses
import time

from decoylab import data, train
from decoylab.cache import Cache
from decoylab.defenses import fingerprints as nf
from decoylab.experiments import fingerprint_trends as nft
from decoylab.experiments import fingerprints as nfx

SETS, N, EPS_ENDS = 3, 3, [0.003, 0.1]
cache = Cache()
train_set = data.load("mnist5k", "train", n=2000, seed=0)
test_set = data.load("mnist5k", "test", seed=0)
config = train.TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=0.001)
cw = {"max_iter": 30, "binary_search_steps": 2, "learning_rate": 0.05, "initial_const": 1.0}
base = nfx.SweepSettings(model_name="nfp_mnist", train_config=config, n_pretest=100, attack_names=["BIM-a", "CW-L2"],
                         overrides={"CW-L2": cw}, preset=nfx.attack_preset("mnist5k"))
variants = {}
for offset, lengths in ((0.0, (2, 8, 32)), (-0.5, (2, 8))):
    for epochs in lengths:
        settings = dataclasses.replace(base, input_offset=offset,
                                       train_config=dataclasses.replace(config, epochs=epochs))
        variants[f"[{offset:g}, {1 + offset:g}], {epochs} epochs"] = (f"offset{offset:g}_{epochs}ep", settings)
start = time.time()
table = nft.trend_table(train_set, test_set, variants, over="ε", grid=EPS_ENDS, n=N, eps=0.1, sets=SETS, cache=cache)
print(nft.sentences(table), f"\n[{time.time() - start:.0f} s]\n", flush=True)

print("One fingerprint set's net, longer or at other ε (fit: mean D of the true class on the 1000 test digits):")
for eps, epochs in [(0.01, 8), (0.03, 8), (0.003, 32), (0.003, 100)]:
    nfp = nf.NeuralFingerprinting.create((1, 28, 28), 10, n=N, eps=eps, fingerprint_seed=0, model_name="nfp_mnist",
                                         train_config=dataclasses.replace(config, epochs=epochs), cache=cache,
                                         log=None).fit(train_set)
    fit = float(nfp.distances(test_set.x).gather(1, test_set.y.view(-1, 1)).mean())
    steps = epochs * -(-len(train_set.y) // config.batch_size)
    print(f"- ε {eps:g}, {epochs} epochs ({steps} steps): accuracy "
          f"{train.accuracy(nfp.model, test_set.x, test_set.y):.3f}, fit {fit:.3f}", flush=True)
