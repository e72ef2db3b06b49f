"""ipywidgets panels for JupyterLab. Notebooks create them only ``if INTERACTIVE:``."""
from __future__ import annotations

import torch
from torch import nn

from decoylab import attacks, plots, train


def eps_explorer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str = "fgsm",
                 eps: float = 0.1, shown: int = 8):
    """A slider for ε: accuracy under ``attack`` and the first ``shown`` adversarial images update live."""
    import ipywidgets as w
    from IPython.display import display

    slider = w.FloatSlider(value=eps, min=0.0, max=0.5, step=0.02, description="ε", continuous_update=False)
    label = w.HTML()
    out = w.Output()

    def update(_=None):
        e = slider.value
        adv = x if e == 0 else attacks.run(attack, model, x, y, eps=e).x_adv
        acc = train.accuracy(model, adv, y)
        label.value = f"<b>{attack.upper()} ε = {e:.2f}: accuracy {100 * acc:.1f} % on {len(x)} test images</b>"
        out.clear_output(wait=True)
        with out:
            display(explorer_figure(model, x[:shown], y[:shown], adv[:shown], e))

    slider.observe(update, names="value")
    update()
    return w.VBox([slider, label, out])


def explorer_figure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor, eps: float):
    """Clean images above their adversarial versions, each column titled "true → predicted on the adversarial
    image" (with "✓" where the prediction survived), so a reader sees which attacks worked."""
    predicted = train.predict(model, adv).argmax(1)
    titles = [f"{int(t)}→{int(p)}" + (" ✓" if int(t) == int(p) else "") for t, p in zip(y, predicted)]
    return plots.image_grid([x, adv], ["clean", f"ε={eps:.2f}"], titles)


class _Retrain:
    """A retrain button that says when the shown result is stale (a slider moved since it was computed: the button
    turns orange and names what changed) and is disabled while it trains, so a second press cannot queue behind."""

    def __init__(self, button, sliders: dict):
        self.button, self.sliders, self.shown = button, sliders, None
        for slider in sliders.values():
            slider.observe(self.mark, names="value")

    def mark(self, _=None):
        current = {name: s.value for name, s in self.sliders.items()}
        changed = [name for name in current if self.shown is not None and current[name] != self.shown[name]]
        self.button.button_style = "warning" if changed else "primary"
        self.button.description = f"retrain ({', '.join(changed)} changed)" if changed else "retrain (cached)"
        self.button.tooltip = "the result below is for the settings before the change" if changed else ""

    def run(self, work):
        """Call ``work()`` with the button disabled; afterwards the shown settings are the current ones."""
        self.button.disabled, self.button.description = True, "training ..."
        try:
            work()
            self.shown = {name: s.value for name, s in self.sliders.items()}
        finally:
            self.button.disabled = False
            self.mark()


def honeymodel_panel(train_set, test_set, *, train_config, watermark_size: float, amplitude: float,
                     poison_percent: float, key_seed: int | None, seed: int = 0, cache=None, probe: int = 100):
    """Watermark size, amplitude and poison % sliders with a retrain button: the HoneyModel's test
    accuracy beside the benign model's, and PGD's watermark reconstruction on ``probe`` test images.
    Every model goes through the cache, so revisiting a setting is instant."""
    import ipywidgets as w
    from IPython.display import display

    from decoylab.defenses import honeymodels as hm

    size = w.FloatSlider(value=watermark_size, min=0.02, max=1.0, step=0.02, description="watermark size")
    amp = w.FloatSlider(value=amplitude, min=0.1, max=1.0, step=0.1, description="amplitude")
    poison = w.FloatSlider(value=poison_percent, min=0.0, max=95.0, step=5.0, description="poison %")
    button = w.Button(description="retrain (cached)", button_style="primary")
    out = w.Output()
    control = _Retrain(button, {"watermark size": size, "amplitude": amp, "poison %": poison})

    def retrain(_=None):
        control.run(train_and_show)

    def train_and_show():
        out.clear_output(wait=True)
        with out:
            honey = hm.HoneyModel.create(tuple(train_set.x.shape[1:]), watermark_size=size.value, amplitude=amp.value,
                                         poison_percent=poison.value, key_seed=key_seed, train_config=train_config,
                                         seed=seed, cache=cache, log=None).fit(train_set)
            benign = honey.control().fit(train_set)
            idx = train.correct_subset(honey.model, test_set.x, test_set.y, probe, seed=seed)
            x, y = test_set.x[idx], test_set.y[idx]
            pgd = attacks.run("pgd", honey.model, x, y, targeted=True, target="random", preset="honeymodels", seed=seed)
            rec = honey.reconstruction(pgd.x_adv, x)
            print(f"test accuracy: HoneyModel {100 * train.accuracy(honey.model, test_set.x, test_set.y):.1f} %, "
                  f"benign {100 * train.accuracy(benign.model, test_set.x, test_set.y):.1f} %")
            print(f"PGD on the HoneyModel: success {100 * pgd.success_rate:.0f} %, mean reconstruction "
                  f"{float(rec.mean()):.3f} on {len(y)} images")
            display(plots.image_grid([honey.key.pattern(), honey.key.apply(x[:6])],
                                     ["key", "watermarked"]))

    button.on_click(retrain)
    retrain()
    return w.VBox([w.HBox([size, amp, poison]), button, out])


def fingerprint_panel(train_set, x_clean: torch.Tensor, y_clean: torch.Tensor, *, n: int, eps: float, tau: float,
                      create_kwargs: dict, attack_names=("FGM", "BIM-b"), preset: str = "nfp_mnist", seed: int = 0,
                      cache=None):
    """NeuralFP's knobs: N and ε sliders with a retrain button (cached), and a τ slider that redraws the
    confusion matrix of Algorithm 1 live (clean ``x_clean`` vs their adversarial versions from the
    chosen attack, crafted on the fingerprinted model). ``create_kwargs`` go to
    ``NeuralFingerprinting.create`` (architecture, training, fingerprint variant, seeds)."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    import seaborn as sns
    from IPython.display import display

    from decoylab.defenses.fingerprints import NeuralFingerprinting
    from decoylab.experiments import fingerprints as nfx

    n_slider = w.IntSlider(value=n, min=1, max=max(30, n), description="N")
    eps_slider = w.FloatLogSlider(value=eps, base=10, min=-3, max=0, step=0.25, description="ε")
    attack = w.Dropdown(options=list(attack_names), value=attack_names[0], description="attack")
    tau_slider = w.FloatSlider(value=tau, min=0.0, max=2.0, step=0.01, description="τ", readout_format=".2f",
                               continuous_update=True)
    button = w.Button(description="retrain (cached)", button_style="primary")
    status, matrix = w.Output(), w.Output()
    state: dict = {}
    control = _Retrain(button, {"N": n_slider, "ε": eps_slider})

    def redraw(_=None):
        if not state:
            return
        clean, adv = state["clean"], state["adversarial"][attack.value]
        counts = [[int((clean <= tau_slider.value).sum()), int((clean > tau_slider.value).sum())],
                  [int((adv <= tau_slider.value).sum()), int((adv > tau_slider.value).sum())]]
        matrix.clear_output(wait=True)
        with matrix:
            fig, ax = plt.subplots(figsize=(3.8, 2.8))
            sns.heatmap(counts, annot=True, fmt="d", cmap="Purples", cbar=False, ax=ax,
                        xticklabels=["accept (real)", "reject (fake)"], yticklabels=["clean", attack.value])
            ax.set(xlabel=f"Algorithm 1 at τ = {tau_slider.value:.2f}", ylabel="input")
            fig.tight_layout()
            plt.close(fig)
            display(fig)

    def retrain(_=None):
        control.run(train_and_show)

    def train_and_show():
        status.clear_output(wait=True)
        with status:
            print(f"training (or loading) N = {n_slider.value}, ε = {eps_slider.value:.3g} ...")
            nfp = NeuralFingerprinting.create(tuple(train_set.x.shape[1:]), train_set.info.num_classes,
                                              n=n_slider.value, eps=eps_slider.value, seed=seed, cache=cache,
                                              log=None, **create_kwargs).fit(train_set)
            scores = nfx.attack_pretest(nfp, x_clean, y_clean, attack_names=attack_names, seed=seed, cache=cache,
                                        preset=preset).scores
            state.update(clean=scores.pop("clean"), adversarial=scores)
            status.clear_output(wait=True)
            print(f"N = {n_slider.value}, ε = {eps_slider.value:.3g}: test accuracy on these images "
                  f"{100 * train.accuracy(nfp.model, x_clean, y_clean):.1f} %; "
                  f"median min-class D: clean {float(state['clean'].median()):.3f}")
        redraw()

    button.on_click(retrain)
    tau_slider.observe(redraw, names="value")
    attack.observe(redraw, names="value")
    retrain()
    return w.VBox([w.HBox([n_slider, eps_slider, button]), status, w.HBox([tau_slider, attack]), matrix])


def luring_panel(train_set, x: torch.Tensor, y: torch.Tensor, *, make_defense, weight: float, eps: float,
                 eps_range: tuple[float, float] = (0.05, 0.5), attack_names=("fgsm", "pgd", "mim", "mim_l2"),
                 preset: str = "luring_mnist", overrides: dict | None = None, seed: int = 0, cache=None):
    """Luring's knobs: λ (retrains P, cached), ε and the attack; shows the transfer metrics of
    x' crafted on Luring's M∘P beside C_E's (the baseline trained without the gap term).
    ``make_defense(approach, weight)`` returns an unfitted ``Luring``."""
    import ipywidgets as w
    import pandas as pd
    from IPython.display import display

    from decoylab.experiments import luring as lx

    weight_box = w.BoundedFloatText(value=weight, min=1e-3, max=100.0, step=0.05, description="λ")
    eps_slider = w.FloatSlider(value=eps, min=eps_range[0], max=eps_range[1], step=max(0.005, eps_range[0]),
                               description="ε", readout_format=".3f")
    attack = w.Dropdown(options=list(attack_names), value=attack_names[0], description="attack")
    button = w.Button(description="run (cached)", button_style="primary")
    out = w.Output()

    def run(_=None):
        out.clear_output(wait=True)
        with out:
            print(f"λ = {weight_box.value:g}: training (or loading) P, then {attack.value} at ε = {eps_slider.value:.2f} ...")
            defenses = {a: make_defense(a, weight_box.value).fit(train_set) for a in ("ce", "luring")}
            rows = {}
            for name, d in defenses.items():
                res = lx.run_attack(d.attacked_model, attack.value, x, y, eps_slider.value, preset, overrides, cache, seed)
                rows[lx.APPROACH_LABELS[name]] = {"clean accuracy (these points)": d.accuracy_and_agreement(x, y)["test"],
                                                  **lx.measure_transfer(d, res.x_adv, y)}
            out.clear_output(wait=True)
            display(pd.DataFrame(rows).T[["clean accuracy (these points)", "DR", "IAR", "AC_MoP", "AC_M", "DAC"]]
                    .round(3))

    button.on_click(run)
    run()
    return w.VBox([w.HBox([weight_box, eps_slider, attack, button]), out])


def attractor_panel(classifier, x: torch.Tensor, y: torch.Tensor, x_calibration: torch.Tensor, *,
                    intervals, weights, strength: float, fpr: float, dataset: str = "mnist",
                    attack_names=("fgsm", "pgd", "deepfool", "cw2"), seed: int = 0, cache=None):
    """The Attractors' knobs — the two interval sizes, the weight on the larger one, A2 and the FPR —
    on the trained C (W needs no training): M's accuracy on these points, then an attack on M with
    F_d's detection and F_r's recovery, beside the same F_d on the attack's examples crafted on C."""
    import ipywidgets as w
    import pandas as pd
    from IPython.display import display

    from decoylab import attacks, params, train
    from decoylab.defenses import attractors as at
    from decoylab.experiments import attractors as xa
    from decoylab.specs.common import FPR

    small = w.BoundedFloatText(value=float(intervals[0]), min=0.5, max=at.MAX_INTERVAL, description="δ small")
    large = w.BoundedFloatText(value=float(intervals[-1]), min=0.5, max=at.MAX_INTERVAL, description="δ large")
    ratio = w.FloatLogSlider(value=float(weights[-1]) / max(float(weights[0]), 1e-9), base=10, min=-2, max=2,
                             description="α large/small")
    strength_slider = w.FloatLogSlider(value=strength, base=10, min=-2, max=1, description="A2")
    fpr_slider = w.FloatLogSlider(value=fpr, base=10, min=-3, max=-0.7, description="FPR", readout_format=".3f")
    attack = w.Dropdown(options=list(attack_names), value=attack_names[0], description="attack")
    button = w.Button(description="run", button_style="primary")
    out = w.Output()

    def run(_=None):
        out.clear_output(wait=True)
        with out:
            try:  # every knob checked before anything is built
                defense = at.Attractors(intervals=[small.value, large.value], weights=[1.0, ratio.value],
                                        strength=strength_slider.value, key_seed=seed)
                params.check("fpr", fpr_slider.value, FPR)
            except ValueError as problem:
                print(problem)
                return
            defense.protect(classifier, tuple(x.shape[1:]), int(classifier(x[:1]).shape[1]))
            defense.calibrate(x_calibration, fpr_slider.value)
            key = {"fgsm": "fgsm", "pgd": "pgd", "deepfool": "deepfool", "cw2": "cw2"}[attack.value]
            engine, kwargs, _ = xa.attack_settings(key, dataset, iteration_cap=30, binary_steps_cap=3,
                                                   initial_const=1.0)
            rows = {}
            for model_name, model in (("on M (attractors)", defense.attacked_model),
                                      ("on C (control)", defense.control().attacked_model)):
                res = attacks.run(engine, model, x, y, seed=seed, cache=cache, **kwargs)
                adv = res.x_adv[res.success]
                flagged = defense.detect(adv) if len(adv) else torch.zeros(0, dtype=torch.bool)
                recovered = defense.recover(adv[flagged]) == y[res.success][flagged] if flagged.any() else flagged
                rows[model_name] = {"attack success": res.success_rate,
                                    "F_d detection": float(flagged.float().mean()) if len(flagged) else float("nan"),
                                    "F_r recovery": float(recovered.float().mean()) if len(recovered) else float("nan")}
            print(f"accuracy on these points: C {train.accuracy(classifier, x, y):.3f}, "
                  f"M {train.accuracy(defense.attacked_model, x, y):.3f}; "
                  f"thresholds {({k: round(v, 4) for k, v in defense.thresholds.items()})}")
            display(pd.DataFrame(rows).T.round(3))

    button.on_click(run)
    run()
    return w.VBox([w.HBox([small, large, ratio]), w.HBox([strength_slider, fpr_slider, attack, button]), out])


def comparison_panel(setups: dict, prepare, *, datasets, seed: int = 0, cache=None):
    """Notebook 90: a dataset dropdown, an attack dropdown and an FPR slider; per defense, the detection
    rate at that FPR, the FPR measured on the attacked images' clean versions, and the overall attack
    success. ``setups`` maps dataset names to ``experiments.compare.ComparisonSetup`` (the notebook's own run);
    a dataset not in it is compared on demand by ``prepare(name)`` when the button is pressed, and kept.
    The adversarial sets come from the cache (section 3 made them) and each detector scores them once per
    dataset and attack, so moving the slider only moves the threshold."""
    import ipywidgets as w
    import pandas as pd
    from IPython.display import display

    from decoylab.experiments import detection

    first = next(iter(setups.values()))
    dataset = w.Dropdown(options=list(dict.fromkeys([*setups, *datasets])), value=next(iter(setups)),
                         description="dataset")
    attack = w.Dropdown(options=list(first.specs), description="attack")
    fpr = w.FloatLogSlider(value=0.05, base=10, min=-3, max=-0.5, step=0.1, description="FPR", continuous_update=False)
    compute = w.Button(description="compare on this dataset", layout=w.Layout(width="auto"))
    out = w.Output()
    scored: dict[tuple[str, str, str], detection.DetectionScores] = {}

    def update(_=None):
        out.clear_output(wait=True)
        setup = setups.get(dataset.value)
        compute.disabled = setup is not None
        with out:
            if setup is None:
                print(f"{dataset.value} has not been compared in this session: press the button to train every "
                      "contender on it with this run's settings (cached for next time).")
                return
            rows = {}
            for name, c in setup.contenders.items():
                if c.defense is None:
                    continue
                key = (dataset.value, attack.value, name)
                if key not in scored:  # scored once; the slider only moves the threshold
                    scored[key] = detection.detection_scores(c.defense, c.defense.attacked_model, setup.x_att,
                                                             setup.y_att, setup.x_cal,
                                                             {attack.value: setup.specs[attack.value]}, seed=seed,
                                                             cache=cache)
                r = detection.rows_at(scored[key], [fpr.value])[attack.value]
                rows[name] = {"TPR": r[f"tpr@{fpr.value:g}"], "FPR measured": r[f"fpr@{fpr.value:g}"],
                              "success": r["success"], "overall": r["overall"]}
            print(f"{dataset.value}, {attack.value}, {len(setup.y_att)} attacked images, threshold at FPR {fpr.value:.3g}")
            display(pd.DataFrame(rows).T.round(3))

    def run_dataset(_=None):
        compute.disabled = True
        out.clear_output(wait=True)
        with out:
            print(f"comparing on {dataset.value}: training every contender ...")
            try:
                setups[dataset.value] = prepare(dataset.value)
            except (ValueError, RuntimeError) as error:  # offline download, images no component takes: said here
                out.clear_output(wait=True)
                print(f"{dataset.value}: {error}")
                compute.disabled = False
                return
        update()

    for control in (dataset, attack, fpr):
        control.observe(update, names="value")
    compute.on_click(run_dataset)
    update()
    return w.VBox([w.HBox([dataset, compute]), w.HBox([attack, fpr]), out])
