"""Seaborn figures, returned (never only shown) so batch runs can save them.

One colour per defense across every notebook, and a readable context for projectors.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib

import matplotlib.pyplot as plt
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
    legend; ``comparison`` and ``curves`` as ``decoylab.compare.comparison_table`` returns them."""
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
        ax.legend(fontsize="x-small", loc="lower right", title="AUC", title_fontsize="x-small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
