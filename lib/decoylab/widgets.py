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
            display(plots.image_grid([x[:shown], adv[:shown]], ["clean", f"ε={e:.2f}"]))

    slider.observe(update, names="value")
    update()
    return w.VBox([slider, label, out])
