"""Every notebook: hygiene checks, then executed with params/tiny through the runner."""
import json
import re
from pathlib import Path

import nbformat
import papermill
import pytest

from decoylab import specs
from decoylab.tools import runner

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RUNNABLE = sorted(runner.discover(ROOT / "notebooks"))
# What each notebook must record in its results.json, and what its tiny run must show:
# numbers, not just keys (the tour's net learns, and PGD at eps 0.3 fools it within its budget).
EXPECTED_RESULTS = {
    "00_tour": {"clean_accuracy", "attack_success_rate", "adversarial_accuracy", "mean_linf"},
    "10_honeymodels": {"honey_accuracy", "benign_accuracy", "honey_accuracy_on_watermarked", "pgd_success_honey",
                       "pgd_reconstruction_perturbation", "detector_overall_acc", "detector_overall_tpr",
                       "control_overall_auc"},
    "11_poison_sweep": {"accuracy_poison_0", "accuracy_poison_30", "pgd_reconstruction_poison_30", "accuracy_size_0.1"},
    "12_mmd_bootstrap": {"pgd_overlap_accuracy", "pgd_permutation_p", "pgd_permutation_p_small",
                         "bootstrap_seconds_1000_draws"},
    "40_neural_fingerprinting": {"accuracy_with_fingerprints", "accuracy_without_fingerprints", "auc_fgm",
                                 "auc_bim_b_all", "auc_cw_l2_successful", "control_auc_bim_b",
                                 "adaptive_auc_paper_adaptive", "adaptive_auc_kit_adaptive"},
    "30_luring": {"accuracy_target", "accuracy_luring", "agreement_luring", "dr_pgd_eps0.3_luring",
                  "iar_mim_l2_eps0.3_ce", "ac_mop_spsa_eps0.3_luring", "ac_m_eco_eps0.3_stack", "dac_mim_w_eps0.3_luring",
                  "clean_flagged_luring", "auc_clean_vs_clean_luring", "cw_l2_target", "cw_linf_luring"},
    "20_attractors": {"attractors.accuracy_C", "attractors.accuracy_M", "attractors.fpr_measured",
                      "attractors.PGD.success_M", "attractors.PGD.detection", "attractors.PGD.control_detection"},
    "21_kde_gradient_analysis": {"fig5.gradient_through_W_median", "fig5.gradient_through_C_median",
                                 "fig6.gradient_through_trapdoor_median", "fig7a.cosine_mean_C", "fig7a.cosine_mean_M"},
    "41_roc_curves": {"auc_fgm_n1", "auc_bim_b_eps0.3", "auc_mean_fgm", "auc_std_fgm",
                      "overlay_fingerprints_defense_pgd_auc", "overlay_honeymodels_control_cw2_auc", "overlay_attractors_defense_pgd_auc"},
    "90_defense_comparison": {"undefended.clean_accuracy", "attractors.accuracy_cost", "fingerprints.pgd.tpr@0.05",
                              "luring.pgd.control_auc", "adaptive.honeymodels.level0.detection",
                              "adaptive.honeymodels.level2.detection", "adaptive.luring.level2.overall",
                              "adaptive.honeymodels.strength.unbounded_eps.eps1.success",
                              "adaptive.attractors.strength.iterations.steps20.overall"},
}
PLAUSIBLE = {
    "00_tour": lambda r: (r["clean_accuracy"] > 0.5 and r["attack_success_rate"] > 0.3
                          and r["mean_linf"] <= 0.3 + 1e-6),
    # PGD at eps 0.3 fools most images; its perturbation is not orthogonal to the watermark.
    "10_honeymodels": lambda r: (r["honey_accuracy"] > 0.3 and r["pgd_success_honey"] > 0.2
                                 and -1 <= r["pgd_reconstruction_perturbation"] <= 1
                                 and 0 <= r["detector_overall_acc"] <= 1),
    "11_poison_sweep": lambda r: 0.3 < r["accuracy_poison_0"] <= 1 and -1 <= r["pgd_reconstruction_poison_30"] <= 1,
    "12_mmd_bootstrap": lambda r: (0.5 <= r["pgd_overlap_accuracy"] <= 1 and 0 < r["pgd_permutation_p"] <= 1
                                   and r["bootstrap_seconds_1000_draws"] < 30),
    # Even a tiny fingerprinted net learns, and BIM-b's large perturbations break its fingerprints.
    "40_neural_fingerprinting": lambda r: (r["accuracy_with_fingerprints"] > 0.5 and r["auc_bim_b_all"] > 0.6
                                           and 0 <= r["adaptive_auc_kit_adaptive"] <= 1),
    # M learns; PGD at 0.3 fools the augmented models; DAC >= AC_M by definition (eq. 4).
    "30_luring": lambda r: (r["accuracy_target"] > 0.5 and r["accuracy_luring"] > 0.3
                            and all(r[f"dac_{a}_eps0.3_{m}"] >= r[f"ac_m_{a}_eps0.3_{m}"] - 1e-6  # float32 rounding
                                    for a in ("spsa", "eco", "mim_w") for m in ("stack", "auto", "ce", "luring"))
                            and 0 <= r["clean_flagged_luring"] <= 1 and r["cw_l2_target"] > 0),
    # M keeps C's accuracy; PGD that follows W is flagged at least as often as PGD on C alone.
    "20_attractors": lambda r: (r["attractors.accuracy_C"] > 0.5
                                and abs(r["attractors.accuracy_M"] - r["attractors.accuracy_C"]) < 0.1
                                and 0 <= r["attractors.fpr_measured"] <= 0.3
                                and r["attractors.PGD.detection"] >= r["attractors.PGD.control_detection"]),
    # Fig. 5: W's gradient dominates C's; Fig. 6: the trapdoor branch's gradient does not.
    "21_kde_gradient_analysis": lambda r: (r["fig5.gradient_through_W_median"] > r["fig5.gradient_through_C_median"]
                                           and r["fig6.gradient_through_trapdoor_median"] < r["fig5.gradient_through_W_median"]
                                           and -1 <= r["fig7a.cosine_mean_M"] <= 1),
    "41_roc_curves": lambda r: (0 <= r["auc_std_fgm"] <= 0.5 and 0.5 < r["auc_mean_fgm"] <= 1
                                and 0 <= r["overlay_fingerprints_defense_pgd_auc"] <= 1),
    # M = C + W classifies like C (W is small), and an attacker who leaves the key's pixels alone is flagged
    # less often than one who does not (HoneyModels' detector reads only those pixels).
    "90_defense_comparison": lambda r: (r["undefended.clean_accuracy"] > 0.5 and abs(r["attractors.accuracy_cost"]) < 0.05
                                        and 0 <= r["fingerprints.pgd.tpr@0.05"] <= 1
                                        and r["adaptive.honeymodels.level2.detection"]
                                        < r["adaptive.honeymodels.level0.detection"]
                                        # PGD over the whole box fools the HoneyModel (no masked gradients)
                                        and r["adaptive.honeymodels.strength.unbounded_eps.eps1.success"] > 0.8),
}
NOT_STATISTICS = re.compile(r"seconds|inference_factor")
REQUIRED_SECTIONS = ("**Learning goals**", "**Estimated run time**", "## 0 Settings", "## Summary", "## Exercises", "<details><summary>Solution</summary>",
                     "**What to try next:**", "## Choices the paper leaves open", "## References")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} carries outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_flow(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    for section in REQUIRED_SECTIONS:
        assert section in text, f"{path.name} lacks {section!r}"
    assert "sys.path" not in text
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    lines = [ln for ln in tagged[0].source.splitlines() if ln.strip() and not ln.startswith("#")]
    declared = papermill.inspect_notebook(str(path))
    # every line is an UPPER_CASE literal with a type and a help comment, and papermill parses it
    assert len(declared) == len(lines), f"{path.name}: papermill parsed {len(declared)} of {len(lines)} parameter lines"
    for name, p in declared.items():
        assert name.isupper() and p["inferred_type_name"] != "None" and p["help"], f"{path.name}: {name}"
    assert "INTERACTIVE" in declared
    assert f'params.validate(globals(), "{path.stem}")' in nb.cells[nb.cells.index(tagged[0]) + 1].source
    # the library's specs cover exactly the parameters cell: nothing unchecked, nothing stale
    assert set(specs.for_notebook(path.stem)) == set(declared), path.name


@pytest.mark.parametrize("name", RUNNABLE)
@pytest.mark.parametrize("preset", runner.CORE_PRESETS)
def test_every_notebook_has_a_valid_preset_file(name, preset):
    tasks = runner.plan(preset, [name], ROOT / "notebooks", ROOT / "params", ROOT / "runs")
    assert tasks[0].name == name


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "params").iterdir()
                                          if p.is_dir() and p.name not in runner.CORE_PRESETS))
def test_variant_presets_are_valid_for_the_notebooks_they_cover(preset):
    """A data-set variant (paper-cifar10, paper-svhn) plans exactly the notebooks it has files for."""
    covered = sorted(f.stem for f in (ROOT / "params" / preset).glob("*.yaml"))
    tasks = runner.plan(preset, None, ROOT / "notebooks", ROOT / "params", ROOT / "runs")
    assert sorted(t.name for t in tasks) == covered and covered


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNNABLE)
def test_notebook_runs_with_tiny_preset(name, tmp_path):
    lines = []
    code = runner.run(preset="tiny", notebooks=[name], notebooks_dir=ROOT / "notebooks",
                      params_dir=ROOT / "params", runs_dir=tmp_path, log=lines.append)
    doc = json.loads((tmp_path / "tiny" / name / "results.json").read_text())
    assert code == 0, "\n".join(lines)
    assert doc["status"] == "ok"
    missing = EXPECTED_RESULTS[name] - set(doc["results"])  # every runnable notebook declares its results
    assert not missing, f"{name} did not record {missing}"
    for key, r in doc["results"].items():
        if r["paper"] is not None:
            assert r["source"], f"{name}.{key}: paper value without its table or figure"
        # every rate or score names the n it rests on; only wall times and their ratios are no statistics
        if isinstance(r["value"], (int, float)) and not NOT_STATISTICS.search(key):
            assert r.get("n") is not None, f"{name}.{key}: a recorded number without the n it rests on"
    assert (tmp_path / "tiny" / name / f"{name}.ipynb").exists()
    values = {k: r["value"] for k, r in doc["results"].items()}
    assert PLAUSIBLE[name](values), f"{name}: implausible tiny results {values}"


@pytest.mark.parametrize("overrides, needle", [
    ({"ADAPTIVE_ATTACK": "cw2", "ADAPTIVE_EPS": 0.1}, "ADAPTIVE_EPS=0.1 is not allowed with ADAPTIVE_ATTACK='cw2'"),
    ({"ADAPTIVE_ATTACK": "deepfool"}, "ADAPTIVE_ATTACK='deepfool' is not allowed"),
])
def test_comparison_names_bad_adaptive_settings_before_training(overrides, needle, tmp_path):
    import yaml

    params = yaml.safe_load((ROOT / "params" / "tiny" / "90_defense_comparison.yaml").read_text())
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(ROOT / "notebooks" / "90_defense_comparison.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={**params, **overrides}, progress_bar=False,
                                   cwd=str(tmp_path))
    assert needle in str(err.value)
    executed = nbformat.read(tmp_path / "out.ipynb", 4)
    training = next(c for c in executed.cells if "compare.prepare_comparison(" in c.source)
    assert not training.get("execution_count")  # stopped at the check: nothing loaded or trained
