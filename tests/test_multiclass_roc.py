"""One-vs-rest ROC and the macro-average curve against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import auc, roc_auc_score, roc_curve

from shiftbench.multiclass_roc import MACRO, macro_average_curve, multiclass_roc


def _scores(n: int, c: int, seed: int, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), labels] += 1.0
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    if decimals is not None:  # many tied scores: vertical and diagonal ROC steps
        p = np.round(p, decimals)
    return labels, p


@pytest.mark.parametrize(("c", "decimals"), [(3, None), (7, None), (7, 1), (4, 2)])
def test_per_class_curves_and_aurocs_match_sklearn(c, decimals):
    labels, probs = _scores(150, c, seed=c, decimals=decimals)
    names = [f"class{k}" for k in range(c)]
    out = multiclass_roc(labels, probs, class_names=names)
    for k, name in enumerate(names):
        fpr, tpr, thr = roc_curve(labels == k, probs[:, k], drop_intermediate=False)
        got = out.curves[out.curves["curve"] == name]
        np.testing.assert_array_equal(got["fpr"], fpr)
        np.testing.assert_array_equal(got["tpr"], tpr)
        np.testing.assert_array_equal(got["threshold"], thr)
        row = out.auroc.set_index("curve").loc[name]
        assert row["auroc"] == pytest.approx(roc_auc_score(labels == k, probs[:, k]), abs=1e-12)
        assert row["n_positive"] == (labels == k).sum()


@pytest.mark.parametrize(("c", "decimals"), [(3, None), (7, 1), (5, 2)])
def test_area_under_the_macro_curve_is_sklearn_ovr_macro_auroc(c, decimals):
    labels, probs = _scores(200, c, seed=10 + c, decimals=decimals)
    out = multiclass_roc(labels, probs)
    macro = out.curves[out.curves["curve"] == MACRO]
    ref = roc_auc_score(labels, probs / probs.sum(1, keepdims=True), multi_class="ovr")
    if decimals is None:  # rounding changes the scores sklearn sees after renormalising
        assert out.auroc.set_index("curve").loc[MACRO, "auroc"] == pytest.approx(ref, abs=1e-12)
    mean_of_classes = np.mean(
        [roc_auc_score(labels == k, probs[:, k]) for k in range(c)]
    )  # sklearn's ovr-macro definition, on the scores as given
    assert auc(macro["fpr"], macro["tpr"]) == pytest.approx(mean_of_classes, abs=1e-12)
    assert np.all(np.diff(macro["fpr"]) >= 0) and np.all(np.diff(macro["tpr"]) >= -1e-15)
    assert macro["tpr"].iloc[0] >= 0 and macro["tpr"].iloc[-1] == pytest.approx(1.0)


def test_macro_curve_on_a_user_grid_is_the_sklearn_example_recipe():
    labels, probs = _scores(120, 4, seed=3)
    grid = np.linspace(0.0, 1.0, 1000)
    out = multiclass_roc(labels, probs, grid=grid)
    # scikit-learn example "Multiclass Receiver Operating Characteristic": macro-average
    mean_tpr = np.zeros_like(grid)
    for k in range(4):
        fpr, tpr, _ = roc_curve(labels == k, probs[:, k])
        mean_tpr += np.interp(grid, fpr, tpr)
    mean_tpr /= 4
    macro = out.curves[out.curves["curve"] == MACRO]
    np.testing.assert_allclose(macro["tpr"], mean_tpr, atol=1e-12)
    assert auc(grid, mean_tpr) == pytest.approx(
        roc_auc_score(labels, probs, multi_class="ovr"), abs=5e-3
    )


def test_bootstrap_cis_bracket_the_point_and_are_seeded():
    labels, probs = _scores(120, 3, seed=4)
    a = multiclass_roc(labels, probs, n_boot=200, seed=1)
    b = multiclass_roc(labels, probs, n_boot=200, seed=1)
    pd_equal = a.auroc.equals(b.auroc)
    assert pd_equal
    assert (a.auroc["auroc_ci_low"] <= a.auroc["auroc"]).all()
    assert (a.auroc["auroc"] <= a.auroc["auroc_ci_high"]).all()
    assert (a.auroc["auroc_ci_high"] - a.auroc["auroc_ci_low"] > 0).all()


def test_an_absent_class_is_left_out_and_listed():
    labels, probs = _scores(60, 4, seed=5)
    labels = np.where(labels == 2, 0, labels)  # nobody is class 2
    out = multiclass_roc(labels, probs, class_names=["a", "b", "c", "d"])
    assert out.undefined == ["c"]
    assert set(out.curves["curve"]) == {"a", "b", "d", MACRO}
    want = np.mean([roc_auc_score(labels == k, probs[:, k]) for k in (0, 1, 3)])
    assert out.auroc.set_index("curve").loc[MACRO, "auroc"] == pytest.approx(want, abs=1e-12)


def test_macro_average_of_one_curve_is_that_curve():
    fpr = np.array([0.0, 0.0, 0.5, 0.5, 1.0])
    tpr = np.array([0.0, 0.5, 0.5, 1.0, 1.0])
    x, y = macro_average_curve([(fpr, tpr)])
    assert auc(x, y) == pytest.approx(auc(fpr, tpr))
    np.testing.assert_array_equal(x, [0, 0, 0.5, 0.5, 1, 1])
    np.testing.assert_array_equal(y, [0, 0.5, 0.5, 1, 1, 1])


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="probs must be"):
        multiclass_roc([0, 1], np.ones((3, 3)))
    with pytest.raises(ValueError, match="class names"):
        multiclass_roc([0, 1, 2], np.eye(3), class_names=["a"])
