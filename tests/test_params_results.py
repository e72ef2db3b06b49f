import json

import pytest

from decoylab import params, results, specs


def test_validate_accepts_good_and_names_every_problem():
    good = {"DATASET": "mnist5k", "EPS": 0.3, "SEED": 0, "INTERACTIVE": False, "lower_case": object()}
    assert params.validate(good, "00_tour") == {"DATASET": "mnist5k", "EPS": 0.3, "SEED": 0, "INTERACTIVE": False}
    with pytest.raises(params.ParameterError) as err:
        params.validate({"DATASET": "imagenet", "EPS": 0.0, "N_TRAIN": -1, "EPOCHS": True}, "00_tour")
    text = str(err.value)
    assert "00_tour" in text and "DATASET='imagenet'" in text and "mnist5k" in text
    assert "EPS=0.0" in text and "N_TRAIN=-1" in text and "EPOCHS=True" in text


def test_unknown_names_and_non_finite_numbers_are_errors_never_skipped():
    with pytest.raises(params.ParameterError, match="unknown parameter 'EPSILON'"):
        params.validate({"EPSILON": 0.3}, "00_tour")
    with pytest.raises(params.ParameterError, match="POISON_PERCENT"):  # 00_tour has no such parameter
        params.validate({"POISON_PERCENT": 30.0}, "00_tour")
    with pytest.raises(params.ParameterError, match=r"LR=inf is not allowed"):
        params.validate({"LR": float("inf")}, "00_tour")
    with pytest.raises(params.ParameterError, match="EPS=nan"):
        params.check("EPS", float("nan"), params.number(0, 1))
    with pytest.raises(KeyError, match="declares no parameter specs"):
        params.validate({}, "99_no_such_notebook")


def test_one_name_can_mean_different_things_in_different_notebooks():
    # ATTACKS: Table VII's attack keys in notebook 20, the comparison's four attacks in notebook 90
    assert params.validate({"ATTACKS": ["umifgsm"]}, "20_attractors")
    with pytest.raises(params.ParameterError, match="ATTACKS"):
        params.validate({"ATTACKS": ["umifgsm"]}, "90_defense_comparison")


def test_rules_across_parameters_are_checked_with_the_notebooks_values():
    values = {"ATTACKS": ["fgsm", "cw2"], "ADAPTIVE_ATTACK": "pgd", "ADAPTIVE_EPS": None}
    assert specs.notebook_problems("90_defense_comparison", values) == [
        "ADAPTIVE_ATTACK='pgd' is not allowed; it must be one of ATTACKS ['fgsm', 'cw2']"]
    values = {"ATTACKS": ["cw2"], "ADAPTIVE_ATTACK": "cw2", "ADAPTIVE_EPS": 0.1}
    assert "no L∞ budget" in specs.notebook_problems("90_defense_comparison", values)[0]
    with pytest.raises(params.ParameterError, match="including 'undefended'"):
        params.validate({"DEFENSES": ["honeymodels"]}, "90_defense_comparison")
    # calibration, detector-fit and attacked images are disjoint parts of the test split: checked before any kernel
    values = {"ATTACKS": ["pgd"], "ADAPTIVE_ATTACK": "pgd", "DATASET": "mnist5k", "N_CALIBRATION": 600,
              "N_DETECTOR_FIT": 300, "N_ATTACK": 200}
    assert specs.notebook_problems("90_defense_comparison", values) == [
        "N_CALIBRATION + N_DETECTOR_FIT + N_ATTACK = 600 + 300 + 200 = 1100 is not allowed; they are disjoint parts "
        "of mnist5k's test split, which has 1000 images"]
    assert specs.notebook_problems("90_defense_comparison", {**values, "N_ATTACK": 100}) == []
    overlay = {"DATASET": "digits", "OVERLAY_N_CALIBRATION": 200, "OVERLAY_N_DETECTOR_FIT": 100, "OVERLAY_N_ATTACK": 60}
    assert "359 images" in specs.notebook_problems("41_roc_curves", overlay)[0]


def test_record_writes_through_in_batch_runs(tmp_path, monkeypatch):
    results.clear()
    monkeypatch.setenv("DECOYLAB_RUN_DIR", str(tmp_path))
    import numpy as np
    results.record("auc", np.float32(0.5), paper=0.99, source="Table 1", note="quick preset",
                   match=results.settings_match("mnist5k", "mnist", True))
    saved = json.loads((tmp_path / results.PARTIAL_FILE).read_text())
    assert saved["auc"] == {"value": 0.5, "paper": 0.99, "source": "Table 1", "note": "quick preset",
                            "match": "different dataset"}
    assert results.table().loc["auc", "difference"] == pytest.approx(-0.49)
    results.clear()


def test_record_refuses_paper_value_without_source_or_match():
    with pytest.raises(ValueError, match="source"):
        results.record("acc", 0.9, paper=0.99)
    with pytest.raises(ValueError, match="match=None is not allowed"):
        results.record("acc", 0.9, paper=0.99, source="Table 1")
    with pytest.raises(ValueError, match="match='close enough' is not allowed"):
        results.record("acc", 0.9, paper=0.99, source="Table 1", match="close enough")
    with pytest.raises(TypeError, match="acc"):
        results.record("acc", object())


def test_settings_match_labels():
    assert results.settings_match("mnist", "mnist", True) == "same dataset and settings"
    assert results.settings_match("mnist", "mnist", False) == "different settings"
    assert results.settings_match("mnist5k", "mnist", True) == "different dataset"
    assert results.settings_match("mnist", None, True) == "different dataset"
    # Every difference follows the label, so the scorecard's column says more than "different dataset".
    listed = results.settings_match("mnist5k", "mnist", False, ["4000 training images (the paper: 60000)",
                                                                  "N_ATTACK 150 (the paper: 500)"])
    assert listed == "different dataset: 4000 training images (the paper: 60000); N_ATTACK 150 (the paper: 500)"
    assert results.match_label(listed) == "different dataset"
    assert results.settings_match("mnist", "mnist", True, "ignored when nothing differs") == "same dataset and settings"
    results.record("acc", 0.9, paper=0.99, source="Table 1", match=listed)  # a labelled list of differences is allowed
    with pytest.raises(ValueError, match="is not allowed"):
        results.record("acc", 0.9, paper=0.99, source="Table 1", match="different dataset, roughly")
    results.clear()


def test_record_carries_n_and_an_interval_for_rates(tmp_path, monkeypatch):
    results.clear()
    monkeypatch.setenv("DECOYLAB_RUN_DIR", str(tmp_path))
    results.record("tpr", 0.75, paper=0.975, source="Table I", match="different dataset", n=4, proportion=True)
    results.record("auc", 0.9, n=120, interval=(0.85, 0.95))
    results.record("cosine", 0.3)
    saved = json.loads((tmp_path / results.PARTIAL_FILE).read_text())
    low, high = saved["tpr"]["interval"]
    assert saved["tpr"]["n"] == 4 and low < 0.4 and high > 0.95  # 3 of 4: Wilson's interval is wide
    assert saved["auc"]["interval"] == [0.85, 0.95] and saved["auc"]["n"] == 120
    assert "n" not in saved["cosine"]
    with pytest.raises(ValueError, match="needs the n it rests on"):
        results.record("tpr", 0.5, proportion=True)
    with pytest.raises(ValueError, match="must be a count"):
        results.record("tpr", 0.5, n=2.5, proportion=True)
    from decoylab import stats

    results.record("auc_scored", 0.8, n=50, auc_against=200)  # an AUC without its scores: Hanley and McNeil's
    saved = json.loads((tmp_path / results.PARTIAL_FILE).read_text())
    assert saved["auc_scored"]["interval"] == pytest.approx(list(stats.hanley_mcneil(0.8, 50, 200)))
    with pytest.raises(ValueError, match="needs the n it rests on"):
        results.record("auc_scored", 0.8, auc_against=200)
    results.clear()


def test_paper_values_are_one_data_file_behind_every_paper_constant():
    from decoylab import paper_values
    from decoylab.experiments import attractors, fingerprints, honeymodels, luring

    papers = paper_values.load()
    assert set(papers) == {"honeymodels", "attractors", "luring", "fingerprints"}
    for paper, entries in papers.items():
        for name, entry in entries.items():
            if isinstance(entry, dict):
                assert entry["source"] and entry["what"] and entry["values"], (paper, name)
    assert honeymodels.PAPER_TABLE_I["mnist"]["pgd"]["tpr"] == 1.0  # read from the file, not typed in the module
    assert attractors.PAPER_TABLE_II["mnist"] == (0.981, 0.98)
    assert luring.PAPER_DEFENSE_TABLE["mnist"][("spsa", 0.2, "luring")] == (0.14, 0.99, 0.99)
    assert fingerprints.PAPER_ADAPTIVE_AUC["value"] == 0.9879
    with pytest.raises(KeyError, match="allowed: table_1"):
        paper_values.entry("honeymodels", "table_9")


def test_plot_context_comes_from_the_environment(monkeypatch):
    import seaborn as sns

    from decoylab import plots

    monkeypatch.setenv("DECOYLAB_PLOT_CONTEXT", "talk")
    plots.setup()
    talk = sns.plotting_context()["font.size"]
    plots.setup("notebook")
    assert talk > sns.plotting_context()["font.size"]
    monkeypatch.setenv("DECOYLAB_PLOT_CONTEXT", "cinema")
    with pytest.raises(ValueError, match="DECOYLAB_PLOT_CONTEXT"):
        plots.setup()


def test_a_notebook_opened_directly_runs_the_quick_settings():
    """Run All in JupyterLab must not start a paper-scale run (a download, hours of training): each notebook's
    parameters cell holds the quick preset's values, and the paper* presets write the papers' out."""
    import ast
    from pathlib import Path

    import papermill
    import yaml

    root = Path(__file__).resolve().parents[1]
    differing = {}
    for notebook in sorted((root / "notebooks").glob("[0-9]*.ipynb")):
        defaults = {k: ast.literal_eval(v["default"]) for k, v in papermill.inspect_notebook(str(notebook)).items()}
        quick = yaml.safe_load((root / "params" / "quick" / f"{notebook.stem}.yaml").read_text())
        differing.update({f"{notebook.stem}.{k}": (defaults.get(k), v) for k, v in quick.items()
                          if k != "INTERACTIVE" and defaults.get(k) != v})
    assert differing == {}
