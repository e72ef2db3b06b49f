"""Claims: verdicts from intervals and evidence, the interval helpers, the declared claims, the run's
results.json and the report's claims tally."""
import json
import math
import os

import numpy as np
import pytest

from decoylab import claims, results, stats
from decoylab.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

Z = 1.959963984540054


def _claim(test, *, paper_value=1.0, min_n=1, min_successes=None, claim_id="demo.table1.pgd.tpr"):
    return claims.Claim(claim_id, "demo", "Table I", "The detector flags PGD examples.", test, paper_value, min_n,
                        min_successes)


def _m(value, low, high, *, n=500, n_successful=None, note=""):
    return claims.Measurement(value, (low, high), n, n_successful, (0,), note)


# ----------------------------------------------------------------------------------------------- intervals
def test_wilson_matches_the_hand_formula_at_the_edges_and_the_middle():
    assert stats.wilson(0, 10) == (0.0, pytest.approx(Z ** 2 / (10 + Z ** 2)))  # 0.2775
    assert stats.wilson(10, 10) == (pytest.approx(10 / (10 + Z ** 2)), 1.0)  # 0.7225
    low, high = stats.wilson(5, 10)
    half = Z * math.sqrt(0.025 + Z ** 2 / 400) / (1 + Z ** 2 / 10)
    assert (low, high) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    assert stats.wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="k=11, n=10"):
        stats.wilson(11, 10)


def test_hanley_mcneil_agrees_with_the_bootstrap_and_keeps_to_the_unit_interval():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(300), np.ones(200)]
    scores = rng.normal(size=500) + labels
    value, boot = stats.bootstrap_auc(labels, scores)
    low, high = stats.hanley_mcneil(value, 200, 300)
    assert low < value < high and abs(low - boot[0]) < 0.01 and abs(high - boot[1]) < 0.01
    assert stats.hanley_mcneil(0.99, 5, 5)[1] == 1.0 and stats.hanley_mcneil(0.01, 5, 5)[0] == 0.0
    assert all(math.isnan(b) for b in stats.hanley_mcneil(0.8, 0, 10))


def test_mean_interval_is_students_t_and_needs_two_values():
    t15, t2 = 2.131449545559776, 4.302652729749462  # t quantiles 0.975 at 15 and 2 degrees of freedom
    assert stats.mean_interval(0.5, 0.2, 16) == (pytest.approx(0.5 - t15 * 0.05), pytest.approx(0.5 + t15 * 0.05))
    assert stats.mean_interval(0.9, 0.03, 3)[1] == pytest.approx(0.9 + t2 * 0.03 / math.sqrt(3))
    assert all(math.isnan(b) for b in stats.mean_interval(0.5, float("nan"), 1))


def test_median_interval_covers_the_median_at_least_95_percent():
    from scipy.stats import binom

    for n in (6, 8, 16, 21, 100, 1000):
        low, high = stats.median_interval(np.arange(n))
        r = int(low) + 1  # the lower bound's rank
        assert high == n - r and 1 - 2 * binom.cdf(r - 1, n, 0.5) >= 0.95
    assert all(math.isnan(b) for b in stats.median_interval(np.arange(5)))


def test_mover_difference_of_two_proportions_is_newcombes_interval():
    # Newcombe (1998), Statistics in Medicine 17, Table II example (a): 56/70 − 48/80, method 10: 0.0524 to 0.3339
    d = claims.difference(claims.proportion(56, 70), claims.proportion(48, 80))
    assert d.value == pytest.approx(0.2)
    assert d.interval == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))
    assert set(d.parts) == {"defense", "control"}


def test_bootstrap_auc_is_the_auc_with_an_interval_as_wide_as_its_standard_error():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(300), np.zeros(300)]
    scores = np.r_[rng.normal(1, 1, 300), rng.normal(0, 1, 300)].round(1)  # rounded: ties count half
    auc, (low, high) = stats.bootstrap_auc(labels, scores, seed=3)
    assert auc == pytest.approx(roc_auc_score(labels, scores))
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)  # Hanley & McNeil (1982) standard error
    se = math.sqrt((auc * (1 - auc) + 299 * (q1 - auc ** 2) + 299 * (q2 - auc ** 2)) / (300 * 300))
    assert low < auc < high and (high - low) / (2 * Z * se) == pytest.approx(1, abs=0.15)
    assert stats.bootstrap_auc(labels, scores, seed=3) == (auc, (low, high))  # seeded
    assert stats.bootstrap_auc([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2]) == (1.0, (1.0, 1.0))
    with pytest.raises(ValueError, match="both classes"):
        stats.bootstrap_auc([1, 1], [0.3, 0.4])


def test_bootstrap_differences_of_aucs_and_means():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(200), np.zeros(200)]
    strong = np.r_[rng.normal(2, 1, 200), rng.normal(0, 1, 200)]
    weak = strong + rng.normal(0, 2, 400)
    diff, (low, high) = stats.bootstrap_auc_difference(labels, strong, weak, seed=0)
    assert diff == pytest.approx(roc_auc_score(labels, strong) - roc_auc_score(labels, weak))
    assert 0 < low < diff < high
    assert stats.bootstrap_auc_difference(labels, strong, strong) == (0.0, (0.0, 0.0))  # paired: same draws
    _, (ilow, ihigh) = stats.bootstrap_auc_difference(labels, strong, weak, control_labels=labels, seed=0)
    assert ihigh - ilow > high - low  # independent samples: a wider interval than the paired one

    a, b = rng.normal(0.3, 1, 400), rng.normal(0, 2, 300)
    diff, (low, high) = stats.bootstrap_mean_difference(a, b, seed=0)
    assert diff == pytest.approx(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / 400 + b.var(ddof=1) / 300)
    assert (high - low) / (2 * Z * se) == pytest.approx(1, abs=0.1)
    assert stats.percentile_interval(np.arange(1001) / 1000) == (pytest.approx(0.025), pytest.approx(0.975))


# ------------------------------------------------------------------------------------------------ verdicts
def test_too_little_evidence_is_inconclusive_and_names_the_count():
    claim = _claim(claims.AtLeast(0.9), min_successes=claims.DETECTION_MIN_SUCCESSES)
    v = claim.judge(_m(1.0, 0.99, 1.0, n_successful=12))  # the interval alone would reproduce it
    assert v.outcome == INCONCLUSIVE
    assert "12 successful adversarial examples" in v.reason and "at least 30" in v.reason
    assert claim.judge(_m(1.0, 0.99, 1.0, n_successful=30)).outcome == REPRODUCED
    assert _claim(claims.AtLeast(0.9), min_n=100).judge(_m(1.0, 0.99, 1.0, n=40)).reason.startswith(
        "too little evidence: 40 images")
    with pytest.raises(ValueError, match="n_successful"):
        claim.judge(_m(1.0, 0.99, 1.0))
    assert _claim(claims.AtLeast(0.9)).judge(_m(float("nan"), float("nan"), float("nan"))).outcome == INCONCLUSIVE


def test_an_interval_straddling_the_threshold_is_inconclusive():
    v = _claim(claims.AtLeast(0.99)).judge(_m(0.98, 0.95, 1.0))
    assert v.outcome == INCONCLUSIVE and "straddles" in v.reason and "[0.95, 1]" in v.reason
    assert _claim(claims.AtMost(0.05)).judge(_m(0.04, 0.02, 0.07)).outcome == INCONCLUSIVE
    assert _claim(claims.Within(0.975, 0.01)).judge(_m(0.97, 0.96, 0.98)).outcome == INCONCLUSIVE
    assert _claim(claims.GreaterThan()).judge(_m(0.02, -0.01, 0.05)).outcome == INCONCLUSIVE


def test_reproduced_when_the_whole_interval_passes_not_reproduced_when_it_all_fails():
    at_least = _claim(claims.AtLeast(0.99))
    assert at_least.judge(_m(0.996, 0.992, 1.0)).outcome == REPRODUCED
    v = at_least.judge(_m(0.93, 0.90, 0.95))
    assert v.outcome == NOT_REPRODUCED and "at least 0.99" in v.reason
    assert _claim(claims.AtMost(0.05)).judge(_m(0.01, 0.0, 0.03)).outcome == REPRODUCED
    assert _claim(claims.AtMost(0.05)).judge(_m(0.1, 0.07, 0.13)).outcome == NOT_REPRODUCED
    within = _claim(claims.Within(0.975, 0.02))
    assert within.judge(_m(0.975, 0.96, 0.99)).outcome == REPRODUCED
    assert within.judge(_m(0.9, 0.88, 0.93)).outcome == NOT_REPRODUCED  # below the band
    assert within.judge(_m(1.0, 0.996, 1.0)).outcome == NOT_REPRODUCED  # above it: not the paper's number either
    greater = _claim(claims.GreaterThan(), paper_value=0.02)
    assert greater.judge(claims.difference(claims.proportion(95, 100), claims.proportion(60, 100))).outcome == REPRODUCED
    assert greater.judge(claims.difference(claims.proportion(60, 100), claims.proportion(95, 100))).outcome == NOT_REPRODUCED
    assert greater.judge(_m(0.0, -0.03, 0.0)).outcome == NOT_REPRODUCED  # nothing of it above 0


def test_ordering_needs_every_consecutive_difference_above_zero():
    order = _claim(claims.Ordering(("pgd", "cw", "jsma")), paper_value=None)
    far = {"pgd": claims.proportion(99, 100), "cw": claims.proportion(70, 100), "jsma": claims.proportion(30, 100)}
    v = order.judge(claims.combined(far))
    assert v.outcome == REPRODUCED and "pgd − cw" in v.reason
    swapped = {**far, "cw": far["jsma"], "jsma": far["cw"]}
    v = order.judge(claims.combined(swapped))
    assert v.outcome == NOT_REPRODUCED and "jsma above cw" in v.reason
    close = {**far, "jsma": claims.proportion(66, 100)}
    assert order.judge(claims.combined(close)).outcome == INCONCLUSIVE
    # a paired interval of the difference (e.g. a paired bootstrap) decides where the parts' intervals overlap
    assert order.judge(claims.combined(close, differences={("cw", "jsma"): (0.01, 0.07)})).outcome == REPRODUCED
    assert order.judge(claims.combined(close, differences={("jsma", "cw"): (0.01, 0.07)})).outcome == NOT_REPRODUCED
    rising = _claim(claims.Ordering(("jsma", "cw", "pgd"), increasing=True), paper_value=None)
    assert rising.judge(claims.combined(far)).outcome == REPRODUCED
    weakest = claims.combined({"a": claims.proportion(9, 10, n_successful=10),
                               "b": claims.proportion(1, 40, n_successful=40)})
    assert (weakest.n, weakest.n_successful) == (10, 10)  # its evidence is the weakest part's
    with pytest.raises(ValueError, match="no part"):
        _claim(claims.Ordering(("a", "z"))).judge(weakest)


# ------------------------------------------------------------------------------------------- declarations
def test_declared_claims_take_paper_value_and_tolerance_from_the_data_file():
    hm = {c.id: c for c in claims.declared("honeymodels")}["honeymodels.table1.mnist.pgd.tpr"]
    assert (hm.source, hm.paper_value, hm.min_successes) == ("Table I", 1.0, 30)
    assert hm.test == claims.Within(1.0, claims.tolerance_rule(1.0, decimals=3, paper_n=500)) == claims.Within(1.0, 0.01)
    att = {c.id: c for c in claims.declared("attractors")}["attractors.table1.mnist.pgd.detection"]
    assert att.test == claims.AtLeast(1.0 - claims.tolerance_rule(1.0, decimals=3))  # 0.995
    lur = {c.id: c for c in claims.declared("luring")}["luring.table14.mnist.spsa_0.2.ac_m_over_ce"]
    assert (lur.source, lur.paper_value, lur.test, lur.min_n) == ("Table 14", 0.02, claims.GreaterThan(), 30)
    assert claims.tolerance_rule(0.5, decimals=2, spread=0.02) == 0.025
    with pytest.raises(ValueError, match="allowed: within"):
        claims._test({"id": "x", "test": "roughly"}, 1.0)
    with pytest.raises(ValueError, match="outcome='fine'"):
        claims.Verdict("fine", "because")


# ---------------------------------------------------------------------------------------------- renderings
def test_summary_is_rendered_from_the_verdicts_and_changes_with_them():
    claim = _claim(claims.Within(1.0, 0.01), min_successes=30)
    good = claim.judge(claims.proportion(400, 400, images=500, n_successful=400, note="MNIST 5k training images"))
    bad = claim.judge(claims.proportion(330, 400, images=500, n_successful=400, note="MNIST 5k training images"))
    thin = claim.judge(claims.proportion(10, 10, images=500, n_successful=10))
    assert (good.outcome, bad.outcome, thin.outcome) == (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
    text_good, text_bad = claims.summary_markdown([good], "HoneyModels"), claims.summary_markdown([bad], "HoneyModels")
    assert text_good != text_bad
    assert "1 reproduced, 0 not reproduced" in text_good and "**Reproduced**" in text_good
    assert "0 reproduced, 1 not reproduced" in text_bad and "**Not reproduced**" in text_bad
    assert "measured 0.825" in text_bad and "against the paper's 1" in text_bad and "MNIST 5k" in text_bad
    text_thin = claims.summary_markdown([thin], "HoneyModels")
    assert "**Inconclusive**" in text_thin and "because too little evidence: 10 successful" in text_thin
    assert "**Reproduced**" not in text_thin and "**Not reproduced**" not in text_thin
    assert claims.summary_markdown([], "HoneyModels") == "**HoneyModels**: no claim was checked in this run."
    stored = {claim.id: bad.as_dict()}  # results.json's claims render the same way
    assert claims.summary_markdown(stored, "HoneyModels") == text_bad
    table = claims.verdict_table([good, thin])
    assert list(table.index) == [claim.id, claim.id] and list(table["verdict"]) == [REPRODUCED, INCONCLUSIVE]
    assert table.iloc[1]["successful"] == 10 and table.iloc[0]["95 % interval"].startswith("[0.99")


def test_a_claim_with_an_unmeasured_part_renders_as_stored():
    """Found on CIFAR-10 stand-ins (notebook 40): an ordering whose part the run could not measure was stored with
    a None interval, and the Summary crashed on it."""
    from decoylab import results

    results.clear()
    claim = _claim(claims.Ordering(("a", "b"), True))
    parts = {"a": claims.proportion(3, 10), "b": claims.Measurement(None, None, 0, note="no successful example")}
    results.record_claim(claim, claims.combined(parts), undecided="not measured: b")
    text = claims.summary_markdown(results.recorded_claims(), "NeuralFP")
    assert "[—]" in text and "**Inconclusive**" in text
    results.clear()


def _fake_notebook_run(tmp_path, monkeypatch, body):
    """tools.execution.execute with papermill replaced by ``body`` run in this process."""
    import papermill

    from decoylab.tools import execution

    monkeypatch.setenv("DECOYLAB_RUN_DIR", "")  # restored after the test (execute sets it)
    monkeypatch.setenv("DECOYLAB_BATCH", "")
    monkeypatch.setattr(os, "dup2", lambda *args: None)  # keep pytest's stderr
    monkeypatch.setattr(papermill, "execute_notebook", lambda *args, **kw: body())
    results.clear()
    out = tmp_path / "tiny" / "10_demo"
    task = execution.Task("10_demo", tmp_path / "10_demo.ipynb", tmp_path / "p.yaml", {}, out, "h", {"SEED": 0})
    try:
        return execution.execute(task, "tiny", {"versions": {}})
    finally:
        results.clear()


def test_record_claim_reaches_results_json_under_claims(tmp_path, monkeypatch):
    claim = claims.declared("honeymodels")[0]

    def body():
        results.record("tpr", 0.9)
        verdict = results.record_claim(claim, claims.proportion(297, 300, images=500, n_successful=300, seeds=[0],
                                                                note="mnist5k"))
        assert verdict.outcome == INCONCLUSIVE and results.verdicts() == [verdict]
        assert json.loads((tmp_path / "tiny/10_demo" / results.CLAIMS_PARTIAL_FILE).read_text())[claim.id]

    doc = _fake_notebook_run(tmp_path, monkeypatch, body)
    saved = json.loads((tmp_path / "tiny/10_demo/results.json").read_text())
    assert saved == doc and saved["results"]["tpr"]["value"] == 0.9  # the recorded numbers as before
    stored = saved["claims"][claim.id]
    assert stored["verdict"] == INCONCLUSIVE and stored["paper_value"] == 1.0 and stored["n_successful"] == 300
    assert stored["interval"] == pytest.approx(list(stats.wilson(297, 300))) and stored["note"] == "mnist5k"
    assert not (tmp_path / "tiny/10_demo" / results.CLAIMS_PARTIAL_FILE).exists()
    assert results.recorded_claims() == {}


def test_report_opens_with_the_claims_tally_and_still_works_without_claims(tmp_path, monkeypatch):
    from decoylab.tools import report

    def body():
        results.record("auc", 0.5, paper=0.99, source="Table 1", match="different dataset")
        chosen = [next(c for c in claims.declared(paper) if c.id == name) for paper, name in
                  (("honeymodels", "honeymodels.table1.mnist.pgd.tpr"), ("attractors", "attractors.table1.mnist.pgd.detection"))]
        for claim, (k, n) in zip(chosen, ((250, 300), (1000, 1000))):
            results.record_claim(claim, claims.proportion(k, n, images=max(n, 500), n_successful=n, note="tiny preset"))

    _fake_notebook_run(tmp_path, monkeypatch, body)
    plain = tmp_path / "tiny" / "20_plain"
    plain.mkdir()
    (plain / "results.json").write_text(json.dumps({"notebook": "20_plain", "status": "ok", "results": {}}))
    paths = report.write(tmp_path / "tiny")
    md = paths["markdown"].read_text()
    assert "Claims: 2 claims checked: 1 reproduced, 1 not reproduced, 0 inconclusive." in md
    assert "| honeymodels | 1 | 0 | 1 | 0 |" in md and "| attractors | 1 | 1 | 0 | 0 |" in md
    row = next(line for line in md.splitlines() if "honeymodels.table1.mnist.pgd.tpr" in line)
    assert "| 0.8333 [" in row and "| not reproduced |" in row and "n=500, 300 successful" in row and "tiny preset" in row
    assert md.index("Claims:") < md.index("Scorecard:")  # the claims come first
    assert "| auc | 0.5 |  |  | 0.99 |" in md and "No results recorded" in md
    assert json.loads(paths["summary"].read_text())["claims"]["attractors"][REPRODUCED] == 1
    assert "1 not reproduced" in paths["html"].read_text()

    # figures inline, every table also as CSV and LaTeX, the HTML escaped by the template engine
    figures = tmp_path / "tiny" / "10_demo" / "figures"
    figures.mkdir(exist_ok=True)
    (figures / "fig2_detection.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    results_doc = json.loads((tmp_path / "tiny" / "10_demo" / "results.json").read_text())
    results_doc["results"]["auc"]["note"] = "<script>alert(1)</script>"
    (tmp_path / "tiny" / "10_demo" / "results.json").write_text(json.dumps(results_doc))
    paths = report.write(tmp_path / "tiny")
    page = paths["html"].read_text()
    assert '<img src="10_demo/figures/fig2_detection.png"' in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "![fig2_detection.png](10_demo/figures/fig2_detection.png)" in paths["markdown"].read_text()
    claims_csv = (tmp_path / "tiny" / "tables" / "claims.csv").read_text().splitlines()
    assert claims_csv[0].startswith("notebook,claim,source") and len(claims_csv) == 3
    assert "honeymodels.table1.mnist.pgd.tpr" in (tmp_path / "tiny" / "tables" / "claims.tex").read_text()
    assert "\\begin{tabular}" in (tmp_path / "tiny" / "tables" / "results.tex").read_text()
    assert "auc" in (tmp_path / "tiny" / "tables" / "results.csv").read_text()

    (tmp_path / "tiny" / "10_demo" / "results.json").unlink()  # a run without claims: the report as before
    md = report.write(tmp_path / "tiny")["markdown"].read_text()
    assert "Claims: 0 claims checked: 0 reproduced, 0 not reproduced, 0 inconclusive." in md
    assert "Scorecard: 0 beside a paper value" in md and "| claim |" not in md
