"""Figures read at a glance: no legend over the data, one colour per defense (``plots.DEFENSE_COLORS``) wherever
defenses are drawn, integer ticks on integer axes. Each figure function is drawn with small synthetic inputs."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from decoylab import plots, stats  # noqa: E402

DEFENSES = ["undefended", "honeymodels", "attractors", "luring", "fingerprints", "feature_squeezing"]


def _data_points(ax):
    """Display coordinates of what an axes shows: every line densely sampled along its segments, every bar's
    corners and centre."""
    points = []
    for line in ax.get_lines():
        xy = np.asarray(line.get_xydata(), dtype=float)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) == 1:
            points.append(xy)
        for a, b in zip(xy[:-1], xy[1:]):
            t = np.linspace(0, 1, 25)[:, None]
            points.append(a + t * (b - a))
    for patch in ax.patches:
        if isinstance(patch, matplotlib.patches.Rectangle) and patch.get_height() > 0:
            x, y, w, h = patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()
            points.append(np.array([[x, y + h], [x + w, y + h], [x + w / 2, y + h / 2], [x + w / 2, y + h]]))
    shown = [ax.transData.transform(np.concatenate(points))] if points else []
    for collection in ax.collections:  # filled areas (histograms, KDE fills) and error bars drawn in data coordinates
        transform = collection.get_transform()
        for path in collection.get_paths():
            vertices = np.asarray(path.vertices, dtype=float)
            vertices = vertices[np.isfinite(vertices).all(axis=1)]
            if len(vertices) and transform == ax.transData:
                shown.append(transform.transform(vertices))
    return np.concatenate(shown) if shown else np.empty((0, 2))


def covered_points(fig) -> dict[str, int]:
    """{axes title: how many data points lie under a legend} over every axes of ``fig`` with a legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # whatever backend drew it, measure with Agg
    canvas.draw()
    renderer = canvas.get_renderer()
    legends = [(ax, ax.get_legend()) for ax in fig.axes if ax.get_legend() is not None] + \
              [(ax, legend) for legend in fig.legends for ax in fig.axes]
    found = {}
    for ax, legend in legends:
        box = legend.get_window_extent(renderer)
        points = _data_points(ax)
        inside = ((points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0) & (points[:, 1] < box.y1))
        if inside.any():
            found[ax.get_title() or "?"] = int(inside.sum())
    return found


def _comparison():
    attacks = ["pgd", "cw2"]
    index = pd.MultiIndex.from_product([DEFENSES, attacks], names=["defense", "attack"])
    rng = np.random.default_rng(0)
    comparison = pd.DataFrame({"AUC": rng.uniform(0.5, 1, len(index)), "control AUC": rng.uniform(0.4, 0.9, len(index)),
                               "overall": rng.uniform(0.05, 0.95, len(index))}, index=index)
    fpr = np.linspace(0, 1, 30)
    curves = {(d, role, a): (fpr, np.clip(fpr ** (0.2 + 0.1 * i + (0.4 if role == "control" else 0)), 0, 1))
              for i, d in enumerate(DEFENSES) for role in ("defense", "control") for a in attacks}
    return comparison, curves, attacks


def _colour(artist):
    getter = artist.get_color if hasattr(artist, "get_color") else artist.get_facecolor
    return mcolors.to_hex(getter(), keep_alpha=False)


def test_the_comparison_figures_keep_their_legends_off_the_data_and_colour_each_defense_its_own():
    comparison, curves, attacks = _comparison()
    fig = plots.roc_every_defense(comparison, curves, attacks, "ROC")
    assert covered_points(fig) == {}
    for line in fig.axes[0].get_lines():
        name = line.get_label().split(" ")[0]
        if name in plots.DEFENSE_COLORS:
            assert _colour(line) == plots.DEFENSE_COLORS[name]
    plt.close(fig)

    fig = plots.overall_attack_success(comparison, "0.05", "overall")
    assert covered_points(fig) == {}
    legend = fig.axes[0].get_legend()
    for handle, text in zip(legend.legend_handles, legend.get_texts()):
        assert _colour(handle) == plots.DEFENSE_COLORS[text.get_text()]
    plt.close(fig)

    security = pd.DataFrame([{"defense": d, "level": level, "detection": 1 - 0.3 * level, "overall": 0.3 * level}
                             for d in ("honeymodels", "attractors") for level in range(4)])
    fig = plots.security_curves(security, "0.05", "security")
    assert covered_points(fig) == {}
    for ax in fig.axes:
        assert _colour(ax.get_lines()[0]) == plots.DEFENSE_COLORS[ax.get_title()]
    plt.close(fig)
    counted = security.assign(**{"n attacked": 200, "n successful": [200, 150, 20, 10] * 2})
    fig = plots.security_curves(counted, "0.05", "security with intervals")
    assert covered_points(fig) == {}
    for ax in fig.axes:  # a Wilson bar per level for detection and for overall, hollow points where n < 30
        assert sum(len(c.get_segments()) for c in ax.collections) == 8
        assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "detection on < 30 successes"
        detection_bars = ax.collections[0].get_segments()  # level 1: detection 0.7 of 150 successful examples
        lo, hi = stats.wilson(105, 150)
        assert detection_bars[1][:, 1].tolist() == pytest.approx([lo, hi])
        hollow = ax.get_lines()[-1]  # levels 2 and 3 (20 and 10 successes)
        assert hollow.get_xdata().tolist() == [2, 3] and hollow.get_markerfacecolor() == "white"
    plt.close(fig)


def test_grouped_bars_take_the_defense_colours_and_keep_the_legend_off_the_bars():
    table = pd.DataFrame({"attack": ["FGSM", "PGD", "CW2"], "C": [0.9, 1.0, 0.5], "M": [0.1, 0.0, 0.01]})
    fig = plots.bars_by_group(table, "attack", {"C": "undefended", "M": "attractors"}, xlabel="attack", ylabel="rate",
                              title="t", colors={"C": plots.DEFENSE_COLORS["undefended"],
                                                 "M": plots.DEFENSE_COLORS["attractors"]})
    assert covered_points(fig) == {}
    legend = fig.axes[0].get_legend()
    assert [_colour(h) for h in legend.legend_handles] == [plots.DEFENSE_COLORS["undefended"],
                                                           plots.DEFENSE_COLORS["attractors"]]
    plt.close(fig)


@pytest.mark.parametrize("grid", [[1, 3, 5], [5, 10, 30]])
def test_fingerprint_counts_get_integer_ticks_and_the_legend_stays_off_the_curves(grid):
    by_n = pd.DataFrame([{"N": n, "attack": a, "AUC": 0.6 + 0.01 * n + 0.1 * i}
                         for i, a in enumerate(["FGM", "BIM-a", "CW-L2"]) for n in grid])
    by_eps = pd.DataFrame([{"ε": e, "attack": a, "AUC": 0.7 + e + 0.05 * i}
                           for i, a in enumerate(["FGM", "BIM-a", "CW-L2"]) for e in (0.003, 0.01, 0.1)])
    fig = plots.auc_vs_n_and_eps(by_n, by_eps, n=grid[-1], eps=0.1)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == [str(n) for n in grid]
    assert covered_points(fig) == {}
    plt.close(fig)


def test_kde_panels_and_sweeps_put_their_legends_off_the_data():
    samples = {"C": torch.ones(50), "W": torch.linspace(0.1, 0.4, 50), "M": torch.linspace(0.5, 0.9, 50)}
    fig = plots.kde_panels([(samples, "Fig. 5a", "output"), (samples, "Fig. 5b", "gradient")])
    assert covered_points(fig) == {}
    plt.close(fig)
    frame = pd.DataFrame([{"sweep": "poison", "x": x, "acc": 0.99 - 0.01 * x, "cos": 0.2 + 0.05 * x}
                          for x in range(5)])
    fig = plots.sweep_panels(frame, [("poison", "x", "poison %", "accuracy")],
                             {"acc": ("accuracy", "tab:blue", "o"), "cos": ("cosine", "tab:red", "s")},
                             rows=[(["acc"], "accuracy"), (["cos"], "cosine")])
    assert covered_points(fig) == {}
    plt.close(fig)


def test_the_check_itself_sees_a_legend_over_the_data():
    fig, ax = plt.subplots()
    ax.plot(np.linspace(0, 1, 50), np.full(50, 0.95), label="a curve along the top")
    ax.set(ylim=(0, 1))
    ax.legend(loc="upper center")
    assert covered_points(fig) != {}
    plt.close(fig)


def test_the_eps_explorer_titles_each_column_with_the_true_and_the_predicted_class():
    from decoylab import widgets

    class Constant(torch.nn.Module):  # predicts class 3 for every image
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))  # the kit reads a model's device from its parameters

        def forward(self, x):
            logits = torch.zeros(len(x), 10)
            logits[:, 3] = 1.0
            return logits

    x = torch.rand(4, 1, 8, 8)
    fig = widgets.explorer_figure(Constant(), x, torch.tensor([3, 1, 3, 7]), x.clone(), 0.1)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles == ["3→3 ✓", "1→3", "3→3 ✓", "7→3"]
    plt.close(fig)


def _bar_labels(ax):
    return [t.get_text() for t in ax.texts if t.get_text()]


def test_a_zero_bar_reads_0_and_a_missing_one_n_a_in_both_bar_charts():
    table = pd.DataFrame({"attack": ["FGSM", "PGD"], "C": [0.9, 0.0], "M": [float("nan"), 0.4]})
    fig = plots.bars_by_group(table, "attack", {"C": "undefended", "M": "attractors"}, xlabel="attack",
                              ylabel="rate", title="t")
    ax = fig.axes[0]
    assert sorted(_bar_labels(ax)) == ["0", "n/a"]
    undefended, attractors = [c for c in ax.containers if isinstance(c, matplotlib.container.BarContainer)]
    where = {t.get_text(): t.xy[0] for t in ax.texts if t.get_text()}  # each mark on its own bar
    assert where["0"] == pytest.approx(undefended[1].get_x() + undefended[1].get_width() / 2)  # C on PGD
    assert where["n/a"] == pytest.approx(attractors[0].get_x() + attractors[0].get_width() / 2)  # M on FGSM
    plt.close(fig)
    comparison, _, _ = _comparison()
    comparison.loc[("luring", "pgd"), "overall"] = 0.0
    comparison.loc[("attractors", "cw2"), "overall"] = float("nan")
    fig = plots.overall_attack_success(comparison, "0.05", "overall")
    assert sorted(_bar_labels(fig.axes[0])) == ["0", "n/a"]
    plt.close(fig)


@pytest.fixture()
def style(request):
    """The style figures are drawn in: as it is, or the kit's own (plots.setup: larger fonts and legends), put back
    afterwards so that no other test inherits it."""
    saved = matplotlib.rcParams.copy()
    if request.param == "kit":
        plots.setup()
    yield request.param
    matplotlib.rcParams.update(saved)


@pytest.mark.parametrize("style", ["as it is", "kit"], indirect=True)
def test_the_other_figure_functions_keep_their_legends_off_the_data_and_the_defense_colours(style):
    rng = np.random.default_rng(1)
    fpr = np.linspace(0, 1, 40)
    fig = plots.roc_panels({"with": {"pgd": (fpr, fpr ** 0.2), "cw2": (fpr, fpr ** 0.5)},
                            "control": {"pgd": (fpr, fpr ** 0.9), "cw2": (fpr, fpr)}})
    assert covered_points(fig) == {}
    plt.close(fig)

    frame = pd.DataFrame([{"attack": a, "group": g, "value": v} for a in ("pgd", "cw2")
                          for g in ("HoneyModel", "benign") for v in rng.normal(0.3 if g == "benign" else 0.6, 0.1, 30)])
    fig = plots.box_per_attack(frame, value="value", hue="group", colors={"HoneyModel": "honeymodels",
                                                                          "benign": "undefended"},
                               ylabel="cosine", title="box")
    assert covered_points(fig) == {}
    boxes = [p for p in fig.axes[0].patches if isinstance(p, matplotlib.patches.PathPatch)]
    assert {_colour(b) for b in boxes} == {plots.DEFENSE_COLORS["honeymodels"], plots.DEFENSE_COLORS["undefended"]}
    plt.close(fig)

    boot = {"pgd": stats.BootstrapMMD(benign_benign=rng.normal(0.1, 0.02, 200), honey_honey=rng.normal(0.12, 0.02, 200),
                                      benign_honey=rng.normal(0.3, 0.03, 200), sigma=1.0, sample_size=50)}
    fig = plots.mmd_histograms(boot, xlabel="MMD", title="Fig. 5")
    assert covered_points(fig) == {}
    plt.close(fig)

    fig = plots.score_densities({"with fingerprints": {"clean": torch.rand(80), "adversarial": torch.rand(80) + 1},
                                 "without (control)": {"clean": torch.rand(80), "adversarial": torch.rand(80)}},
                                "min D", "min_j D_j")
    assert covered_points(fig) == {}
    plt.close(fig)

    from decoylab.experiments.adaptive_verdicts import Rate

    checks = pd.DataFrame([{"defense": d, "check": check, "budget": f"steps {steps}", "restarts": 1 if check == "iterations" else 3,
                            "success": Rate(int(50 + steps / 10), 100), "overall": Rate(int(steps / 8), 100)}
                           for d in ("luring", "fingerprints") for check, budgets in
                           (("iterations", (10, 20, 40, 80)), ("restarts", (80,))) for steps in budgets])
    fig = plots.attack_convergence(checks, "0.05", "convergence")
    assert covered_points(fig) == {}
    for ax in fig.axes:
        assert _colour(ax.get_lines()[0]) == plots.DEFENSE_COLORS[ax.get_title()]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "20", "40", "80"]  # integer ticks
    plt.close(fig)

    spread = pd.DataFrame({"mean": [0.8, 0.7], "std": [0.02, 0.05], "min": [0.78, 0.6]}, index=["5", "10"])
    fig = plots.mean_std_bars(spread, color=plots.DEFENSE_COLORS["fingerprints"], ylabel="AUC", xlabel="N", title="m")
    assert {_colour(p) for p in fig.axes[0].patches} == {plots.DEFENSE_COLORS["fingerprints"]}
    plt.close(fig)
