"""Seaborn figures, returned (never only shown) so batch runs can save them.

One colour per defense across every notebook, and a readable context for projectors.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib

import matplotlib.pyplot as plt
from matplotlib.container import BarContainer
import seaborn as sns
import torch

# Consistent colours: the same defense has the same colour in every notebook.
DEFENSE_COLORS = {
    "undefended": "#7f7f7f", "honeymodels": "#d62728", "attractors": "#1f77b4",
    "luring": "#2ca02c", "fingerprints": "#9467bd", "feature_squeezing": "#ff7f0e",
}


PLOT_CONTEXTS = ("paper", "notebook", "talk", "poster")


def setup(context: str | None = None) -> None:
    """Seaborn theme for every figure. ``context`` defaults to ``$DECOYLAB_PLOT_CONTEXT`` or
    ``"notebook"``; ``"talk"`` (what ``make lab-room`` sets) enlarges fonts and lines for a projector."""
    import os

    context = context or os.environ.get("DECOYLAB_PLOT_CONTEXT") or "notebook"
    if context not in PLOT_CONTEXTS:
        raise ValueError(f"plot context {context!r} is not allowed (DECOYLAB_PLOT_CONTEXT); "
                         f"allowed: {', '.join(PLOT_CONTEXTS)}")
    sns.set_theme(context=context, style="whitegrid")


def image_grid(rows: Sequence[torch.Tensor], row_titles: Sequence[str],
               col_titles: Sequence[str] | None = None, cell: float = 1.4) -> matplotlib.figure.Figure:
    """Images in rows (each tensor (K, C, H, W) in [0, 1]); e.g. clean above adversarial."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows + 0.4), squeeze=False)
    for r, images in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c >= len(images):
                ax.axis("off")
                continue
            img = images[c].detach().cpu()
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img.permute(1, 2, 0).clamp(0, 1))
            if c == 0:
                ax.set_ylabel(row_titles[r])
            if r == 0 and col_titles is not None and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=9)
    fig.tight_layout()
    plt.close(fig)  # returned for display/saving; closing avoids a second copy in notebooks
    return fig


def saliency_grid(columns: dict[str, torch.Tensor], title: str, cell: float = 1.6) -> matplotlib.figure.Figure:
    """One column per entry of ``columns`` ({title: (N, C, H, W)}), one row per image: the first column
    shows images in [0, 1], the others signed maps (channel mean; red +, blue −, each panel scaled to
    its own maximum absolute value)."""
    n_rows = len(next(iter(columns.values())))
    fig, axes = plt.subplots(n_rows, len(columns), figsize=(cell * len(columns), cell * n_rows), squeeze=False)
    for j, (col_title, images) in enumerate(columns.items()):
        for i in range(n_rows):
            ax = axes[i, j]
            if j == 0:
                ax.imshow(images[i].permute(1, 2, 0).squeeze(), cmap="gray", vmin=0, vmax=1)
            else:
                img = images[i].mean(0)
                bound = float(img.abs().max()) or 1.0
                ax.imshow(img, cmap="RdBu_r", vmin=-bound, vmax=bound)
            ax.set(xticks=[], yticks=[])
            if i == 0:
                ax.set_title(col_title, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def kde_panels(panels, *, log_scale: bool = False, legend_title: str = "signal", figsize=(11, 3.6)):
    """Panels side by side, each a filled KDE per labelled sample, every sample normalised on its own:
    ``panels`` is a list of ``({label: 1-D tensor}, title, x label)``; returns the figure. A sample without
    spread (C's softmax always sums to 1) is a vertical line at its value, not a spike that flattens the other
    curves; the legends sit below the panels, off the data."""
    fig, axes = plt.subplots(1, len(panels), figsize=figsize, squeeze=False)
    for ax, (samples, title, xlabel) in zip(axes[0], panels):
        colors = sns.color_palette(n_colors=len(samples))
        for color, (label, values) in zip(colors, samples.items()):
            values = values.detach().double().cpu().numpy()
            if not len(values):
                continue
            if values.max() - values.min() <= 1e-9 * abs(values).max():  # relative: Fig. 6's gradients are ~1e-7
                ax.axvline(values[0], color=color, linewidth=2, label=f"{label} (always {values[0]:.3g})")
            else:
                sns.kdeplot(x=values, log_scale=log_scale, fill=True, color=color, label=label, ax=ax,
                            warn_singular=False)
        if log_scale:
            ax.set_xscale("log")
        ax.set(title=title, xlabel=xlabel, ylabel="density")
        ax.legend(title=legend_title, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    fig.tight_layout()
    return fig


def _grouped_bars(long, *, x: str, y: str, hue: str, ax, palette) -> None:
    """Seaborn's grouped bars of ``long`` (one row per x and hue), with "0" written on a bar of height 0 and "n/a"
    where a value is missing (NaN), so that neither reads as the other: both would draw nothing."""
    x_order, hue_order = list(dict.fromkeys(long[x])), list(dict.fromkeys(long[hue]))
    sns.barplot(data=long.fillna({y: 0.0}), x=x, y=y, hue=hue, order=x_order, hue_order=hue_order, ax=ax,
                palette=palette, saturation=1)  # saturation 1: seaborn dulls bar colours by default; keep the exact ones
    value = {(a, b): v for a, b, v in zip(long[x], long[hue], long[y])}
    containers = [c for c in ax.containers if isinstance(c, BarContainer)]
    for container, group in zip(containers, hue_order):
        marks = [value.get((a, group), float("nan")) for a in x_order]
        ax.bar_label(container, labels=["n/a" if v != v else "0" if v == 0 else "" for v in marks], fontsize=7,
                     padding=1)


def bars_by_group(table, x: str, bars: dict[str, str], *, xlabel: str, ylabel: str, title: str, figsize=(11, 3.8),
                  colors: dict[str, str] | None = None, tick_notes: dict[str, str] | None = None):
    """Grouped bars: per value of column ``x`` one bar for each column in ``bars`` ({column: legend label}).
    ``colors`` maps a column to its colour (a defense's from ``DEFENSE_COLORS``); ``tick_notes`` adds a second line
    to a group's tick (e.g. how many successes it rests on). A bar of exactly 0 is marked "0" and a missing value
    "n/a", so that neither reads as the other; the legend sits right of the axes, off the bars."""
    import pandas as pd

    long = pd.melt(table, id_vars=[x], value_vars=list(bars), var_name="model", value_name="rate")
    palette = {bars[c]: colors[c] for c in bars if colors and c in colors} or None
    long["model"] = long["model"].map(bars)
    fig, ax = plt.subplots(figsize=figsize)
    _grouped_bars(long, x=x, y="rate", hue="model", ax=ax, palette=palette)
    if tick_notes:
        groups = [tick.get_text() for tick in ax.get_xticklabels()]
        ax.set_xticks(range(len(groups)), [f"{g}\n{tick_notes.get(g, '')}".rstrip() for g in groups])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.tick_params(axis="x", rotation=45)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def roc_curves(curves: dict[str, tuple], title: str, ax=None, colors: dict[str, str] | None = None):
    """ROC curves from ``{label: (fpr, tpr)}`` (e.g. ``metrics.roc``); ``colors`` maps labels to
    colours (the per-defense palette) where given; returns the figure."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4))
    else:
        fig = ax.figure
    for label, curve in curves.items():
        if curve is not None:
            ax.plot(curve[0], curve[1], label=label, color=(colors or {}).get(label))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set(xlabel="false-positive rate (clean flagged)", ylabel="true-positive rate (adversarial flagged)",
           title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def roc_every_defense(comparison, curves: dict, attacks: Sequence[str], title: str):
    """One panel per attack: each defense's ROC curve (solid) beside its control's (dashed), AUC in the
    legend; ``comparison`` and ``curves`` as ``decoylab.experiments.detection.comparison_table`` returns them."""
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.6 * len(attacks), 4.4), squeeze=False)
    defenses = list(dict.fromkeys(name for name, _ in comparison.index))
    for ax, attack in zip(axes[0], attacks):
        for name in defenses:
            for role, style in (("defense", "-"), ("control", "--")):
                curve = curves.get((name, role, attack))
                if curve is not None:
                    auc_value = comparison.loc[(name, attack), "AUC" if role == "defense" else "control AUC"]
                    ax.plot(curve[0], curve[1], style, color=DEFENSE_COLORS[name],
                            label=f"{name}{' (control)' if role == 'control' else ''} {auc_value:.2f}")
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
        ax.set(title=f"{attack}", xlabel="false-positive rate (clean flagged)", ylabel="true-positive rate",
               xlim=(0, 1), ylim=(0, 1.01))
        # below the panel: with six defenses and their controls a legend inside covers the curves
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, title="AUC",
                  title_fontsize="x-small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def box_per_attack(frame, *, value: str, hue: str, colors: dict[str, str], ylabel: str, title: str,
                   xlabel: str = "attack"):
    """Box plots of ``frame[value]`` per attack (column ``attack``), one box per ``hue`` group; ``colors``
    maps each group to the defense whose colour it takes (``DEFENSE_COLORS``); a grey line at 0. Each attack's
    tick names the number of values behind each box, in the legend's order."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    groups = [group for group in colors if group in set(frame[hue])]
    sns.boxplot(frame, x="attack", y=value, hue=hue, ax=ax, hue_order=groups, saturation=1,
                palette={group: DEFENSE_COLORS[defense] for group, defense in colors.items()})
    ax.axhline(0, color="grey", linewidth=0.8)
    counts = frame.groupby(["attack", hue]).size()
    attacks = [tick.get_text() for tick in ax.get_xticklabels()]
    ax.set_xticks(range(len(attacks)), [f"{attack}\nn = " + " / ".join(str(int(counts.get((attack, group), 0)))
                                                                       for group in groups) for attack in attacks])
    ax.set(ylabel=ylabel, xlabel=xlabel, title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title=hue)  # right of the axes: inside it covered boxes
    fig.tight_layout()
    plt.close(fig)  # returned for display/saving, as image_grid
    return fig


def sweep_panels(frame, panels: Sequence[tuple[str, str, str, str]], curves: dict[str, tuple[str, str, str]],
                 ylabel: str | None = None, bounds: dict[str, tuple[str, str]] | None = None,
                 rows: Sequence[tuple[Sequence[str], str]] | None = None):
    """Line panels, one column per sweep: ``panels`` holds (value of ``frame.sweep``, x column, x label, title)
    per panel, ``curves`` {column: (label, colour, marker)}; ``bounds`` {column: (low column, high column)} draws
    each point's 95 % interval as an error bar. ``rows`` [(columns, y label)] puts quantities of different kinds
    (an accuracy, a cosine) on rows of their own, each row sharing its y axis; without it, one row of every curve
    labelled ``ylabel``."""
    rows = list(rows) if rows else [(list(curves), ylabel or "")]
    fig, axes = plt.subplots(len(rows), len(panels), figsize=(5.5 * len(panels), 3.3 * len(rows) + 0.7),
                             sharey="row", sharex="col", squeeze=False)
    for r, (columns, row_label) in enumerate(rows):
        for ax, (which, x_col, xlabel, title) in zip(axes[r], panels):
            part = frame[frame.sweep == which]
            for col in columns:
                label, color, marker = curves[col]
                low, high = (bounds or {}).get(col, (None, None))
                errors = None if low is None else [(part[col] - part[low]).clip(lower=0),
                                                   (part[high] - part[col]).clip(lower=0)]
                ax.errorbar(part[x_col], part[col], yerr=errors, marker=marker, color=color, label=label, capsize=3)
            if r == 0:
                ax.set_title(title)
            if r == len(rows) - 1:
                ax.set_xlabel(xlabel)
        axes[r, 0].set_ylabel(row_label)
        axes[r, -1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    fig.tight_layout()
    plt.close(fig)
    return fig


def mmd_histograms(boot: dict, *, xlabel: str, title: str):
    """One panel per attack of ``{attack: stats.BootstrapMMD}``: the MMD distributions of the three
    pairings (HoneyModels Fig. 5), with the overlap accuracy in the panel's title."""
    import pandas as pd

    fig, axes = plt.subplots(1, max(1, len(boot)), figsize=(4.2 * max(1, len(boot)), 3.6), squeeze=False)
    colors = {"benign–benign": "tab:blue", "honey–honey": "tab:red", "benign–honey": "tab:green"}
    for ax, (attack, b) in zip(axes[0], boot.items()):
        frame = pd.concat([pd.DataFrame({"MMD": v, "pair": k}) for k, v in
                           (("benign–benign", b.benign_benign), ("honey–honey", b.honey_honey),
                            ("benign–honey", b.benign_honey))])
        sns.histplot(frame, x="MMD", hue="pair", palette=colors, element="step", stat="density", common_norm=False,
                     ax=ax)
        ax.set(title=f"{attack.upper()}: overlap accuracy {b.overlap_accuracy():.2f}", xlabel=xlabel)
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def overall_attack_success(comparison, fpr_label: str, title: str):
    """Bars per attack and defense: the attack success that survives detection (``comparison`` as
    ``decoylab.experiments.detection.comparison_table`` returns it; its ``overall`` column); a 0 is written "0",
    a missing value "n/a"."""
    bars = comparison["overall"].rename("overall attack success").reset_index()
    fig, ax = plt.subplots(figsize=(9, 4))
    _grouped_bars(bars, x="attack", y="overall attack success", hue="defense", ax=ax, palette=DEFENSE_COLORS)
    ax.set(ylim=(0, 1.02), ylabel=f"success × (1 − TPR at FPR {fpr_label})", title=title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0), title="defense")  # off the bars
    fig.tight_layout()
    return fig


def security_curves(security, fpr_label: str, title: str):
    """One panel per defense: detection and overall attack success per attacker-knowledge level
    (``security`` as ``decoylab.experiments.detection.security_table`` returns it), with Wilson 95 % intervals
    where it has the counts (detection on the successful examples, overall on the attacked images); a detection
    rate on fewer than 30 successful examples is drawn hollow (inconclusive)."""
    from decoylab import stats

    def bars(rates, counts):  # errorbar's asymmetric yerr from each rate's Wilson interval
        intervals = [stats.wilson(int(round(r * n)), int(n)) if n and r == r else (r, r) for r, n in zip(rates, counts)]
        return [[max(0.0, r - lo) for r, (lo, _) in zip(rates, intervals)],
                [max(0.0, hi - r) for r, (_, hi) in zip(rates, intervals)]]

    counted = {"n successful", "n attacked"} <= set(security.columns)
    families = list(security["defense"].unique())
    fig, axes = plt.subplots(1, max(1, len(families)), figsize=(4.3 * max(1, len(families)), 4), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes[0], families):
        part = security[security["defense"] == name]
        ax.plot(part["level"], part["detection"], "o-", color=DEFENSE_COLORS[name], label="detection (TPR)")
        ax.plot(part["level"], part["overall"], "s--", color="black", label="overall attack success")
        if counted:
            for what, n, colour in (("detection", "n successful", DEFENSE_COLORS[name]),
                                    ("overall", "n attacked", "black")):
                ax.errorbar(part["level"], part[what], yerr=bars(list(part[what]), list(part[n])), fmt="none",
                            ecolor=colour, capsize=3)
            thin = part[part["n successful"] < 30]
            ax.plot(thin["level"], thin["detection"], "o", mfc="white", color=DEFENSE_COLORS[name],
                    label="detection on < 30 successes" if len(thin) else None)
        ax.set(title=name, xlabel="attacker knowledge (level, see table)", xticks=list(part["level"]), ylim=(-0.02, 1.02))
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.18))  # below, off the curves
    axes[0][0].set_ylabel(f"rate at FPR {fpr_label}")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def attack_convergence(checks, fpr_label: str, title: str):
    """One panel per defense: success and get-through (success not flagged at ``fpr_label``) of its strongest
    adaptive attacker against the attack's iterations, with 95 % intervals (``checks`` as
    ``decoylab.experiments.attack_strength.strength_checks`` returns it); restarts as an open marker."""
    families = list(dict.fromkeys(checks["defense"]))
    fig, axes = plt.subplots(1, max(1, len(families)), figsize=(4.3 * max(1, len(families)), 4), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes[0], families):
        part = checks[checks["defense"] == name]
        for check, marker, fill in (("iterations", "o", True), ("restarts", "D", False)):
            rows = part[part["check"] == check]
            if not len(rows):
                continue
            steps = [int(b.split()[-1]) for b in rows["budget"]]
            for what, style, colour in (("success", "-", DEFENSE_COLORS[name]), ("overall", "--", "black")):
                rates = list(rows[what])
                values = [r.value for r in rates]
                errors = [[r.value - r.interval[0] for r in rates], [r.interval[1] - r.value for r in rates]]
                label = {"success": "success", "overall": "gets through"}[what]
                ax.errorbar(steps, values, yerr=errors, fmt=marker + (style if check == "iterations" else ""),
                            color=colour, mfc=colour if fill else "white", capsize=3,
                            label=f"{label}" + ("" if check == "iterations" else f" ({int(rows.iloc[0]['restarts'])} starts)"))
        ax.set(title=name, xlabel="attack iterations", xscale="log", ylim=(-0.02, 1.02))
        ticks = sorted({int(b.split()[-1]) for b in part[part["check"] != "unbounded ε"]["budget"]})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2)  # below the x label
    axes[0][0].set_ylabel(f"rate (detector at FPR {fpr_label})")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fingerprint_directions(dx: torch.Tensor, dy: torch.Tensor, eps: float, shown: int = 4):
    """Neural Fingerprinting's secret: the first ``shown`` input directions Δx (N, C, H, W) in units of ε,
    channel 0, beside the output fingerprint Δy (N, K, K) of direction 1 (class of the input × logit)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3), gridspec_kw={"width_ratios": [2, 1]})
    shown = min(shown, len(dx))
    axes[0].imshow(torch.cat([d[0] / eps for d in dx[:shown]], dim=1), cmap="RdBu_r", vmin=-1, vmax=1)
    axes[0].set(title=f"the first {shown} directions Δx (channel 0, in units of ε)", xticks=[], yticks=[])
    sns.heatmap(dy[0].numpy(), ax=axes[1], cmap="RdBu_r", center=0, annot=dy.shape[-1] <= 10, fmt=".2f",
                annot_kws={"size": 6}, cbar=False)
    axes[1].set(title="Δy of direction 1", xlabel="logit k", ylabel="class j of the input")
    fig.tight_layout()
    return fig


def score_densities(panels: dict[str, dict[str, torch.Tensor]], value: str, xlabel: str):
    """One KDE panel per model (``{model: {input: 1-D scores}}``), one curve per input, each normalised
    on its own; ``value`` names the score, ``xlabel`` labels its axis."""
    import pandas as pd

    frame = pd.concat([pd.DataFrame({value: s.numpy(), "input": k, "model": who})
                       for who, samples in panels.items() for k, s in samples.items()])
    g = sns.displot(frame, x=value, hue="input", col="model", kind="kde", common_norm=False, fill=False,
                    height=3.2, aspect=1.3, facet_kws={"sharex": False, "sharey": False}, warn_singular=False)
    g.set_axis_labels(xlabel, "density")
    return g.figure


def roc_panels(panels: dict[str, dict[str, tuple]], figsize=(10, 4)):
    """Side-by-side ``roc_curves`` panels, ``{panel title: {label: (fpr, tpr)}}``; returns the figure."""
    fig, axes = plt.subplots(1, len(panels), figsize=figsize, squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        roc_curves(curves, title, ax=ax)
    return fig


def auc_vs_n_and_eps(by_n, by_eps, *, n: int, eps: float):
    """Neural Fingerprinting's Fig. 3, left and middle: AUC per attack against the number of fingerprints N
    (ε fixed at ``eps``) and against their scale ε (N fixed at ``n``); frames with columns N or ε, attack, AUC."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    sns.lineplot(by_n, x="N", y="AUC", hue="attack", marker="o", ax=axes[0])
    sns.lineplot(by_eps, x="ε", y="AUC", hue="attack", marker="o", ax=axes[1], legend=False)
    axes[0].set(xlabel="number of fingerprints N", ylabel="AUC-ROC (correct pre-test points)", title=f"ε = {eps}")
    counts = sorted(set(int(v) for v in by_n["N"]))
    axes[0].set_xticks(counts, [str(v) for v in counts])  # N is a count: ticks at the measured N only, never 1.5
    axes[1].set(xlabel="fingerprint scale ε (pixels on [0, 1])", xscale="log", title=f"N = {n}")
    grid = list(dict.fromkeys(by_eps["ε"]))
    axes[1].set_xticks(grid, [f"{e:g}" for e in grid], minor=False)
    axes[1].xaxis.set_minor_locator(plt.NullLocator())
    axes[0].legend(title="attack", fontsize="small", loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=5)
    fig.tight_layout()
    return fig


def mean_std_bars(spread, *, color: str, ylabel: str, xlabel: str, title: str):
    """Bars of ``spread["mean"]`` with ``spread["std"]`` error bars, one per row of ``spread`` (columns mean,
    std, min); the y axis starts just below the smallest ``min``."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(spread.index, spread["mean"], yerr=spread["std"].fillna(0), capsize=4, color=color)
    ax.set(ylabel=ylabel, xlabel=xlabel, ylim=(max(0.0, float(spread["min"].min()) - 0.05), 1.0), title=title)
    fig.tight_layout()
    return fig
