"""Injected Attractors, whose gradient the attacker follows (J. Zhang, E.-C. Chang, H. K. Lee, "Detection and
Recovery of Adversarial Attacks with Injected Attractors", §IV-C, eq. 1 and §VI-C, Figs. 5-7; notebook 21).

- ``TrapdoorConstruction`` — the counter-example of §IV-C, eq. 1: D·W_ω + (1 − D)·C with an
  additive-watermark decoder W_ω and trapdoor detector D, built analytically;
- ``branch_gradients`` (Figs. 5, 6), ``nearest_attractor``, ``attractor_cosines``, ``cosines_by_interval``
  and ``local_density_cosines`` (Fig. 7) — the measurements;
- ``trapdoor_goals``, ``trapdoor_attack_check``, ``cosine_samples``, ``sphere_disagreement``,
  ``local_density_finding``, ``cosines_by_definition`` and the summary tables — notebook 21's analysis, and
  ``record_results`` its named results.
"""
from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from decoylab import metrics, results, stats, train
from decoylab.defenses.attractors import CODEWORDS, DISTANCE_UNITS, Attractors, CombinedModel, QIMDecoder

if TYPE_CHECKING:
    import pandas as pd



# ----- §IV-C: a trapdoored model that meets the training goals but does not steer gradients -----

class TrapdoorConstruction(nn.Module):
    """Eq. 1: M̃(x) = D_κ(x)·W_ω(x) + (1 − D_κ(x))·C_π(x), all three analytic but C.

    W_ω decodes an *additive* watermark: trapdoor k adds ``amplitude`` on the pixels where a secret
    ±1 pattern ωₖ is +1; the correlation cₖ(x) = ⟨ωₖ, x⟩/ℓ, W_ω = softmax(gain·c). D_κ =
    sigmoid(gain·(max c − threshold)) says whether a trapdoor is present (``calibrate`` sets the threshold). The output is a
    probability vector; ``forward`` returns its log, so the attack engine's cross-entropy is M̃'s
    negative log-likelihood."""

    def __init__(self, classifier: nn.Module, num_classes: int, input_shape: tuple[int, ...], *,
                 amplitude: float = 0.3, gain: float = 400.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.classifier, self.amplitude, self.gain = classifier.eval(), float(amplitude), float(gain)
        patterns = torch.randint(0, 2, (num_classes, math.prod(input_shape)), generator=g).float() * 2 - 1
        self.register_buffer("patterns", patterns)
        self.input_shape = tuple(input_shape)
        self.threshold = self.amplitude / 4  # until ``calibrate`` places it between clean and trapdoored inputs

    @torch.no_grad()
    def calibrate(self, x_clean: torch.Tensor, seed: int = 0) -> float:
        """Place D's threshold midway between clean inputs (99th percentile of max correlation) and
        trapdoored ones (their 1st percentile) — the "accurate detector" eq. 1 assumes; small images
        have noisy correlations, so a fixed threshold would fire on clean ones."""
        device = self.patterns.device
        x_clean = x_clean.to(device)
        labels = torch.randint(0, self.patterns.shape[0], (len(x_clean),),
                               generator=torch.Generator().manual_seed(seed)).to(device)
        clean = self.correlation(x_clean).amax(1)
        marked = self.correlation(self.trapdoored(x_clean, labels)).amax(1)
        self.threshold = float((clean.quantile(0.99) + marked.quantile(0.01)) / 2)
        return self.threshold

    def extra_repr(self) -> str:
        # Part of the attack cache's key (see QIMDecoder.extra_repr): the calibrated threshold moves D.
        return f"amplitude={self.amplitude!r}, gain={self.gain!r}, threshold={self.threshold!r}"

    def correlation(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.patterns.T / self.patterns.shape[1]

    def trapdoored(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """x + Δ_t: the trapdoor of class ``label`` (one per row) added and clipped."""
        delta = self.amplitude * (self.patterns[label] > 0).float()
        return (x + delta.view(-1, *self.input_shape)).clamp(0, 1)

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(D, W_ω, C_π) at x."""
        correlation = self.correlation(x)
        detector = torch.sigmoid(self.gain * (correlation.amax(1) - self.threshold))
        return detector, F.softmax(self.gain * correlation, 1), F.softmax(self.classifier(x), 1)

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N1 = D·W_ω and N2 = (1 − D)·C_π (Fig. 6)."""
        detector, watermark, soft = self.parts(x)
        return detector[:, None] * watermark, (1 - detector[:, None]) * soft

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n1, n2 = self.branches(x)
        return torch.log((n1 + n2).clamp_min(1e-12))


# ----- Figs. 5-7: which branch drives the gradient, and does it point to an attractor? -----

def _loss_gradient(model_output, x: torch.Tensor, y: torch.Tensor, retain_graph: bool = False) -> torch.Tensor:
    (grad,) = torch.autograd.grad(F.cross_entropy(model_output, y, reduction="sum"), x, retain_graph=retain_graph)
    return grad


def branch_gradients(model: CombinedModel | TrapdoorConstruction, x: torch.Tensor, y: torch.Tensor,
                     batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per input: the 1-norms of the two summed signals and of the loss gradient that flows through
    each (the other held constant) — Fig. 5 (W vs C) and Fig. 6 (N1 = D·W_ω vs N2 = (1 − D)·C_π).
    By the chain rule the two gradients add up to the whole model's."""
    out: dict[str, list] = {k: [] for k in ("signal_1", "signal_2", "gradient_1", "gradient_2")}
    device = next(model.parameters()).device
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb, yb = xb.to(device).requires_grad_(True), yb.to(device)
        if isinstance(model, CombinedModel):
            first, second = model.decoder(xb), F.softmax(model.classifier(xb), 1)
            through_first = model.combine(second.detach(), first)
            through_second = model.combine(second, first.detach())
        else:
            first, second = model.branches(xb)
            through_first = torch.log((first + second.detach()).clamp_min(1e-12))
            through_second = torch.log((first.detach() + second).clamp_min(1e-12))
        out["signal_1"].append(first.detach().abs().sum(1).cpu())
        out["signal_2"].append(second.detach().abs().sum(1).cpu())
        for key, output in (("gradient_1", through_first), ("gradient_2", through_second)):
            grad = _loss_gradient(output, xb, yb, retain_graph=key == "gradient_1")  # both share the forward pass
            out[key].append(grad.flatten(1).abs().sum(1).cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def nearest_attractor(decoder: QIMDecoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each input, the nearest attractor (L2) and its message's class t: per message, the local maximum of
    w_t inside [0, 255] that ``QIMDecoder.watermarked`` computes (every pixel at its bit's nearest codeword, clipped
    to the box); the message whose attractor is closest wins."""
    best, best_dist, label = x.clone(), torch.full((len(x),), float("inf"), device=x.device), \
        torch.zeros(len(x), dtype=torch.long, device=x.device)
    for t in range(decoder.messages.shape[0]):
        candidate = decoder.watermarked(x, torch.full((len(x),), t, dtype=torch.long, device=x.device))
        dist = (candidate - x).flatten(1).norm(dim=1)
        closer = dist < best_dist
        best[closer], best_dist[closer], label[closer] = candidate[closer], dist[closer], t
    return best, label


def attractor_cosines(model: nn.Module, decoder: QIMDecoder, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Fig. 7a: cos(x_w − x, −∇ₓ J(x, y_t)) with x_w the nearest attractor and t its message, for
    ``model`` (C's logits or M): does a step that raises class t move toward t's attractor?"""
    device = next(model.parameters()).device
    out = []
    for xb in x.split(batch_size):
        xb = xb.to(device)
        target, t = nearest_attractor(decoder, xb)
        xb = xb.clone().requires_grad_(True)
        descent = -_loss_gradient(model(xb), xb, t)
        out.append(metrics.cosine(target - xb.detach(), descent).cpu())
    return torch.cat(out)


def cosines_by_interval(model: nn.Module, decoder: QIMDecoder, x: torch.Tensor,
                        batch_size: int = 256) -> dict[str, dict[str, torch.Tensor]]:
    """Fig. 7a taken apart: the cosine between x_w − x (the exact nearest attractor, message t) and
    (a) ``model``'s descent direction −∇ₓ J(x, t), as in ``attractor_cosines``, and (b) W's own pull
    toward message t, −∇ₓ Q(x, m_t), each over all pixels and over the pixels of each interval size
    alone. The intervals move pixels by very different amounts (δ = 3 vs 128 on [0, 255]) while Q's
    gradient is largest where δ is smallest, so a direction can agree within every interval size and
    still have a small cosine over all pixels."""
    device = next(model.parameters()).device
    groups = {"all pixels": None, **{f"δ = {d:g} pixels": decoder.interval_of_pixel == i
                                     for i, d in enumerate(decoder.intervals)}}
    out = {kind: {g: [] for g in groups} for kind in ("model loss gradient", "W alone (−∇Q)")}
    for xb in x.split(batch_size):
        xb = xb.to(device)
        target, t = nearest_attractor(decoder, xb)
        toward = (target - xb).flatten(1)
        xg = xb.clone().requires_grad_(True)
        descent = -_loss_gradient(model(xg), xg, t).flatten(1)
        xq = xb.clone().requires_grad_(True)
        (pull,) = torch.autograd.grad(-decoder.distance(xq).gather(1, t[:, None]).sum(), xq)
        for kind, direction in (("model loss gradient", descent), ("W alone (−∇Q)", pull.flatten(1))):
            for name, mask in groups.items():
                a, b = (toward, direction) if mask is None else (toward[:, mask], direction[:, mask])
                out[kind][name].append(metrics.cosine(a, b).detach().cpu())
    return {kind: {g: torch.cat(v) for g, v in by_group.items()} for kind, by_group in out.items()}


@torch.no_grad()
def local_density_cosines(model: nn.Module, decoder: QIMDecoder, x: torch.Tensor, *, radius: float,
                          samples: int, seed: int = 0, cache=None) -> torch.Tensor:
    """Fig. 7b: cos(x_w − x, ∇ₓ H_δ(x, y_t)) with H_δ the fraction of points on the sphere of radius
    δ around x classified t (§IV-B b). Its gradient is estimated from the same ``samples`` sphere
    points: ∇H ≈ (d/δ)·mean((1[pred = t] − H)·u) — the gradient of the ball-smoothed indicator, the
    baseline H subtracted to cut variance; the factor d/δ does not change the cosine. Where every
    sample has the same class the estimate is 0 and so is the cosine.

    It costs ``samples`` forward passes per image, so with a ``decoylab.cache.Cache`` the result is
    stored, keyed by the model, the decoder, the images and the settings."""
    if cache is not None:
        from decoylab.cache import code_version, model_identity

        parts = {"measure": "local_density_cosines", "code": code_version(sys.modules[__name__]), **model_identity(model),
                 "decoder": model_identity(decoder), "x": x, "radius": radius, "samples": samples, "seed": seed}
        return cache.get_or_build("measurements", parts, lambda: local_density_cosines(
            model, decoder, x, radius=radius, samples=samples, seed=seed))
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    out = []
    for xb in x.split(max(1, 4096 // samples)):
        xb = xb.to(device)
        target, t = nearest_attractor(decoder, xb)
        u = torch.randn(len(xb), samples, xb[0].numel(), generator=g).to(device)
        u = u / u.norm(dim=2, keepdim=True)
        probes = (xb.flatten(1)[:, None] + radius * u).clamp(0, 1).view(-1, *xb.shape[1:])
        # In the default batches, not all probes at once: on a CPU that is about twice as fast.
        hit = (train.predict(model, probes).argmax(1).to(device).view(len(xb), samples) == t[:, None]).float()
        gradient = ((hit - hit.mean(1, keepdim=True))[:, :, None] * u).mean(1)
        out.append(metrics.cosine(target - xb, gradient).cpu())
    return torch.cat(out)


# ----- Notebook 21's analysis -----

def magnitude_summary(split: dict[str, torch.Tensor], names) -> pd.DataFrame:
    """Median and mean of each of ``branch_gradients``' four measurements, the columns named ``names``."""
    import pandas as pd

    summary = pd.DataFrame({k: [float(v.median()), float(v.mean())] for k, v in split.items()}, index=["median", "mean"])
    summary.columns = list(names)
    return summary


def random_targets(y: torch.Tensor, num_classes: int, seed: int = 0) -> torch.Tensor:
    """A seeded target class other than the label, per row."""
    offset = torch.randint(0, num_classes - 1, y.shape, generator=torch.Generator().manual_seed(seed))
    return (y + 1 + offset) % num_classes


def trapdoor_goals(trapdoor: TrapdoorConstruction, classifier: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   targets: torch.Tensor) -> pd.Series:
    """Eq. 1's training goals: clean inputs classified like C, trapdoored inputs x + Δ_t as t."""
    import pandas as pd

    device = trapdoor.patterns.device
    marked = trapdoor.trapdoored(x.to(device), targets.to(device)).cpu()
    return pd.Series({"accuracy on clean inputs (C)": train.accuracy(classifier, x, y),
                      "accuracy on clean inputs (eq. 1 model)": train.accuracy(trapdoor, x, y),
                      "trapdoored inputs classified as t": train.accuracy(trapdoor, marked, targets)})


def trapdoor_attack_check(trapdoor: TrapdoorConstruction, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor, *,
                          seed: int = 0, cache=None) -> pd.DataFrame:
    """Does an attack walk into a trapdoor? PGD (Table VII) on the eq. 1 model; D > 0.5 would reveal it. Its
    control: PGD crafted on C alone (no trapdoor in the gradient) read by the same D. Beside them, the share of
    trapdoored inputs with D > 0.5 (the detector's sanity check). Columns: ``share`` and the ``n`` it is of."""
    import pandas as pd

    from decoylab import attacks

    device = trapdoor.patterns.device

    def flagged(images: torch.Tensor) -> tuple[float, int]:
        with torch.no_grad():
            d = trapdoor.parts(images.to(device))[0].cpu()
        return (float((d > 0.5).float().mean()) if len(d) else float("nan")), len(d)

    pgd = attacks.run("pgd", trapdoor, x, y, preset="deepsec_mnist", seed=seed, cache=cache)
    control = attacks.run("pgd", trapdoor.classifier, x, y, preset="deepsec_mnist", seed=seed, cache=cache)
    rows = {"PGD success on the eq. 1 model": (pgd.success_rate, len(x)),
            "successful PGD examples with D > 0.5 (detected)": flagged(pgd.x_adv[pgd.success]),
            "PGD success on C alone (control)": (control.success_rate, len(x)),
            "successful PGD examples on C with D > 0.5 (control)": flagged(control.x_adv[control.success]),
            "trapdoored inputs with D > 0.5 (sanity)": flagged(trapdoor.trapdoored(x.to(device), targets.to(device)))}
    return pd.DataFrame(rows, index=["share", "n"]).T.astype({"n": int})


def cosine_samples(defense: Attractors, x: torch.Tensor, *, n_density: int, radius: float, samples: int,
                   seed: int = 0, cache=None) -> dict[str, torch.Tensor]:
    """Fig. 7's four samples: Z1, Z2 — the soft-label gradient's cosine to the nearest attractor for C and for M
    on every image of ``x``; S1, S2 — the local density's, on the first ``n_density`` images."""
    decoder, first = defense.decoder, x[:min(len(x), n_density)]
    return {"Z1": attractor_cosines(defense.classifier, decoder, x),
            "Z2": attractor_cosines(defense.attacked_model, decoder, x),
            "S1": local_density_cosines(defense.classifier, decoder, first, radius=radius, samples=samples, seed=seed,
                                        cache=cache),
            "S2": local_density_cosines(defense.attacked_model, decoder, first, radius=radius, samples=samples,
                                        seed=seed, cache=cache)}


@torch.no_grad()
def sphere_disagreement(defense: Attractors, x: torch.Tensor, *, radius: float, samples: int, seed: int = 0) -> float:
    """The share of the points Fig. 7b samples (``samples`` per image on the sphere of radius ``radius`` around each
    image of ``x``, the same draws as ``local_density_cosines``) where M and C decide differently. Where it is 0,
    H_δ of M equals H_δ of C point for point, so S1 and S2 cannot differ."""
    g = torch.Generator().manual_seed(seed)
    device = next(defense.classifier.parameters()).device
    differ, total = 0, 0
    for xb in x.split(max(1, 4096 // samples)):
        u = torch.randn(len(xb), samples, xb[0].numel(), generator=g).to(device)
        u = u / u.norm(dim=2, keepdim=True)
        probes = (xb.to(device).flatten(1)[:, None] + radius * u).clamp(0, 1).view(-1, *xb.shape[1:])
        by_c = train.predict(defense.classifier, probes).argmax(1)
        by_m = train.predict(defense.attacked_model, probes).argmax(1)
        differ, total = differ + int((by_c != by_m).sum()), total + len(probes)
    return differ / total


def local_density_finding(cosines: dict[str, torch.Tensor], disagreement: float, *, radius: float) -> str:
    """Markdown for Fig. 7b from this run: how many estimates are exactly 0, the mean cosines, and whether M's
    decisions differ from C's anywhere on the sampled spheres (if not, S2 is S1 by construction)."""
    s_c, s_m = cosines["S1"], cosines["S2"]
    zero = float(((s_c == 0) & (s_m == 0)).float().mean())
    text = (f"Fig. 7b (local density, sphere radius {radius:g}, {len(s_m)} images): for {zero:.0%} of the images all "
            f"or none of the sampled points are classified t by both models, so the estimated gradient is exactly 0; "
            f"the mean cosine is {float(s_c.mean()):+.3f} for C and {float(s_m.mean()):+.3f} for M. M and C decide "
            f"differently on {disagreement:.2%} of the sampled points.")
    if disagreement == 0:
        text += (" So H_δ of M equals H_δ of C at every sampled point, S2 cannot differ from S1, and the KDE of "
                 "Fig. 7b is not drawn: the separation the paper shows needs points where W changes M's decision.")
    return text


def cosine_summary(cosines: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Per sample of ``cosine_samples``: mean, share above the paper's 0.8, share exactly 0 (no estimate)."""
    import pandas as pd

    values = [cosines[k] for k in ("Z1", "Z2", "S1", "S2")]
    return pd.DataFrame({"mean": [float(v.mean()) for v in values],
                         "share > 0.8": [float((v > 0.8).float().mean()) for v in values],
                         "share exactly 0 (no estimate)": [float((v == 0).float().mean()) for v in values]},
                        index=["Z1 (C)", "Z2 (M)", "S1 (C)", "S2 (M)"])


def cosines_by_definition(classifier: nn.Module, x: torch.Tensor, num_classes: int, *, intervals, weights,
                          strength: float, key_seed: int | None) -> pd.DataFrame:
    """Fig. 7a taken apart (``cosines_by_interval``) for both codeword sets and both distance units, the mean
    cosine per row (codewords, distance unit, direction) and column (all pixels, each interval size); ``x``'s first
    1000 images."""
    import pandas as pd

    rows = {}
    for codewords in CODEWORDS:
        for unit in DISTANCE_UNITS:
            probe = Attractors(intervals=intervals, weights=weights, strength=strength, codewords=codewords,
                               distance_unit=unit, key_seed=key_seed).protect(classifier, tuple(x.shape[1:]), num_classes)
            split_cos = cosines_by_interval(probe.attacked_model, probe.decoder, x[:1000])
            for kind, by_group in split_cos.items():
                rows[(codewords, unit, kind)] = {group: float(values.mean()) for group, values in by_group.items()}
    table = pd.DataFrame(rows).T
    table.attrs["n_images"] = len(x[:1000])  # each mean is over these images
    return table


def record_results(*, fig5: dict[str, torch.Tensor], fig6: dict[str, torch.Tensor], trapdoor_check,
                   cosines: dict[str, torch.Tensor], cosine_table, dataset: str, comparison: str,
                   density_samples: int) -> None:
    """Notebook 21's results (the paper gives them only as figures): Figs. 5 and 6's median gradients and
    outputs, the trapdoor's detection of PGD, Fig. 7's mean cosines and ``cosine_table`` cell by cell."""
    n_images, n_density = len(fig5["signal_1"]), len(cosines["S1"])
    note = f"{dataset}, {n_images} test images ({comparison}); the paper gives these only as figures"

    def median(name: str, values: torch.Tensor, source: str) -> None:
        results.record(name, float(values.median()), source=source, n=len(values),
                       interval=stats.median_interval(values.numpy()), note=f"{note}; interval: order statistics")

    def mean(name: str, values: torch.Tensor, source: str, what: str) -> None:
        results.record(name, float(values.mean()), source=source, n=len(values),
                       interval=stats.mean_interval(float(values.mean()), float(values.double().std()), len(values)),
                       note=what)

    median("fig5.gradient_through_W_median", fig5["gradient_1"], "Fig. 5b")
    median("fig5.gradient_through_C_median", fig5["gradient_2"], "Fig. 5b")
    median("fig5.output_W_median", fig5["signal_1"], "Fig. 5a")
    median("fig6.gradient_through_trapdoor_median", fig6["gradient_1"], "Fig. 6b")
    median("fig6.gradient_through_C_median", fig6["gradient_2"], "Fig. 6b")
    for name, row, what in (("fig6.pgd_detected_by_trapdoor", "successful PGD examples with D > 0.5 (detected)",
                             "successful PGD examples on the eq. 1 model with D > 0.5"),
                            ("fig6.pgd_on_C_detected_by_trapdoor", "successful PGD examples on C with D > 0.5 (control)",
                             "the control: successful PGD examples crafted on C alone with D > 0.5")):
        results.record(name, float(trapdoor_check.loc[row, "share"]), source="§IV-C", note=f"share of {what}",
                       n=int(trapdoor_check.loc[row, "n"]), proportion=True)
    z_c, z_m, s_c, s_m = (cosines[k] for k in ("Z1", "Z2", "S1", "S2"))
    mean("fig7a.cosine_mean_C", z_c, "Fig. 7a (Z1)", note)
    mean("fig7a.cosine_mean_M", z_m, "Fig. 7a (Z2)", note)
    results.record("fig7a.share_above_0.8_M", float((z_m > 0.8).float().mean()), source="Fig. 7a", n=len(z_m),
                   proportion=True, note="the paper: 'cosine similarity is more than 0.8' for M")
    note_7b = (f"{dataset}, the first {n_density} of {n_images} test images ({comparison}), {density_samples} "
               f"sphere points each")
    mean("fig7b.cosine_mean_C", s_c, "Fig. 7b (S1)", note_7b)
    mean("fig7b.cosine_mean_M", s_m, "Fig. 7b (S2)", note_7b)
    for (codewords, unit, kind), row in cosine_table.iterrows():
        which = "W_pull" if kind.startswith("W") else "M"
        for group, value in row.items():
            key = "all" if group == "all pixels" else "delta" + group.split("=")[1].split()[0]
            results.record(f"fig7a.{which}_cosine_{codewords}_{unit}_{key}", value, source="Fig. 7a (taken apart)",
                           n=cosine_table.attrs.get("n_images"),
                           note=f"cos(x_w − x, {kind}); {group}; codewords {codewords}, distances in {unit} units; {note}")
