import json

import pytest

from decoylab import params, results


def test_validate_accepts_good_and_names_every_problem():
    good = {"DATASET": "mnist5k", "EPS": 0.3, "SEED": 0, "INTERACTIVE": False, "lower_case": object()}
    assert params.validate(good) == {"DATASET": "mnist5k", "EPS": 0.3, "SEED": 0, "INTERACTIVE": False}
    with pytest.raises(params.ParameterError) as err:
        params.validate({"DATASET": "imagenet", "EPS": 0.0, "N_TRAIN": -1, "EPOCHS": True})
    text = str(err.value)
    assert "DATASET='imagenet'" in text and "mnist5k" in text
    assert "EPS=0.0" in text and "N_TRAIN=-1" in text and "EPOCHS=True" in text


def test_record_writes_through_in_batch_runs(tmp_path, monkeypatch):
    results.clear()
    monkeypatch.setenv("DECOYLAB_RUN_DIR", str(tmp_path))
    import numpy as np
    results.record("auc", np.float32(0.5), paper=0.99, source="Table 1", note="mnist5k, quick preset")
    saved = json.loads((tmp_path / results.PARTIAL_FILE).read_text())
    assert saved["auc"] == {"value": 0.5, "paper": 0.99, "source": "Table 1", "note": "mnist5k, quick preset"}
    assert results.table().loc["auc", "difference"] == pytest.approx(-0.49)
    results.clear()


def test_record_refuses_paper_value_without_source():
    with pytest.raises(ValueError, match="source"):
        results.record("acc", 0.9, paper=0.99)
    with pytest.raises(TypeError, match="acc"):
        results.record("acc", object())
