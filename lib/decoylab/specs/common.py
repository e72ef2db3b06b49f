"""Names the kit knows and the parameters every notebook shares, as data (no torch).

The name tuples mirror the registries in ``decoylab.data``, ``decoylab.models`` and
``decoylab.attacks`` (``tests/test_structure.py`` checks that they agree), so that a preset can be
checked without importing those modules."""
from __future__ import annotations

from decoylab.specs.base import boolean, choice, integer, list_of, number, text

DATASETS = ("mnist5k", "digits", "mnist", "fashion_mnist", "cifar10", "svhn")
MODELS = ("honey_small_conv", "resnet20", "deepsec_mnist", "nfp_mnist", "nfp_cifar10", "luring_mnist", "luring_vgg",
          "luring_vgg_wide", "mlp")
COMPONENTS = ("luring_p_mnist", "luring_p_svhn", "luring_p_cifar10")
ATTACKS = ("fgsm", "rfgsm", "bim", "bim_a", "pgd", "mim", "dim", "mim_ti", "dim_ti", "mim_l2", "llc", "rllc", "illc",
           "tmifgsm", "cw2", "ead", "optmargin", "blb", "deepfool", "uap", "jsma", "spsa", "eco")
ATTACK_BACKENDS = ("fast", "art")
#: The attacks the "art" backend has (the others are the kit's own, "fast" only).
ART_ATTACKS = ("fgsm", "bim", "pgd", "mim", "cw2", "ead", "deepfool", "uap", "jsma")
DEVICES = ("auto", "cpu", "cuda")

#: (train, test) images per split, so that a preset asking for more is refused before anything runs (the
#: embedded sets' splits are the kit's own, ``decoylab.data``; ``tests/test_structure.py`` checks them).
SPLIT_SIZES = {"mnist5k": (4000, 1000), "digits": (1438, 359), "mnist": (60000, 10000),
               "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000), "svhn": (73257, 26032)}

DATASET = choice(DATASETS)
DATA_ROOT = text(optional=True, what="a folder path ($DECOYLAB_DATA when null)")
MODEL = choice(MODELS)
SEED = integer(0)
COUNT = integer(1)
OPTIONAL_COUNT = integer(1, optional=True)
RATE = number(0, low_open=True)  # a learning rate, a weight, a strength: any positive number
UNIT = number(0, 1, low_open=True)  # a budget or fraction on the [0, 1] pixel scale
FPR = number(0, 1, low_open=True, high_open=True)
FPR_LIST = list_of(FPR)

#: What every notebook has (the TEMPLATE's parameters), and the training knobs most have.
SHARED = {"DATASET": DATASET, "DATA_ROOT": DATA_ROOT, "N_TRAIN": OPTIONAL_COUNT, "N_TEST": OPTIONAL_COUNT,
          "SEED": SEED, "INTERACTIVE": boolean()}
TRAINING = {"MODEL": MODEL, "EPOCHS": COUNT, "BATCH_SIZE": COUNT, "LR": RATE}
ATTACK_BACKEND = choice(ATTACK_BACKENDS)


def sizes_fit_the_dataset(values) -> list[str]:
    """N_TRAIN and N_TEST at most the chosen data set's split sizes (``SPLIT_SIZES``)."""
    sizes = SPLIT_SIZES.get(values.get("DATASET"))
    found = []
    for key, available, split in (("N_TRAIN", sizes and sizes[0], "train"), ("N_TEST", sizes and sizes[1], "test")):
        wanted = values.get(key)
        if sizes and isinstance(wanted, int) and not isinstance(wanted, bool) and wanted > available:
            found.append(f"{key}={wanted} is not allowed; {values['DATASET']}'s {split} split has {available} images")
    return found


def attack_on_its_backend(values) -> list[str]:
    """ATTACK_BACKEND "art" only with an attack ART has (``ART_ATTACKS``): refused before any training."""
    attack, backend = values.get("ATTACK"), values.get("ATTACK_BACKEND")
    if backend == "art" and attack is not None and attack not in ART_ATTACKS:
        return [f"ATTACK={attack!r} is not allowed with ATTACK_BACKEND='art', which has only {', '.join(ART_ATTACKS)}; "
                "use ATTACK_BACKEND='fast' or one of those"]
    return []
