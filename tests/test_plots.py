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
    if not points:
        return np.empty((0, 2))
    return ax.transData.transform(np.concatenate(points))


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
