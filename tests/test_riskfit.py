"""The risk model's fit (integrations/riskfit.py's Newton solver) against scikit-learn's
LogisticRegression, the reference it replaced: the same penalised optimum, on made-up data and on
the prior corpus that ships with the package; and the cases a solver gets wrong first."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_bot.integrations import riskfit
from pipeline_bot.integrations.riskfit import C_REGULARISATION, fit_logistic

sklearn_linear = pytest.importorskip("sklearn.linear_model")


def objective(x, y, w, c, coef, intercept):
    z = x @ coef + intercept
    return 0.5 * coef @ coef + c * np.sum(w * (np.logaddexp(0, z) - y * z))


def reference(x, y, w, c):
    model = sklearn_linear.LogisticRegression(C=c, max_iter=20000, tol=1e-10)
    model.fit(x, y, sample_weight=w)
    return model.coef_[0], float(model.intercept_[0])


def made_up(seed, n, d, *, shift=-1.0, weighted=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    truth = rng.normal(size=d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ truth + shift)))).astype(float)
    w = rng.uniform(0.2, 5.0, size=n) if weighted else np.ones(n)
    return x, y, w


@pytest.mark.parametrize(
    ("seed", "n", "d", "c", "shift", "weighted"),
    [
        (1, 500, 5, 0.05, -1.0, True),
        (2, 2000, 20, 0.05, -3.0, True),  # rare positives, as fix-inducing commits are
        (3, 300, 40, 1.0, 0.0, False),  # many features, little data, weak penalty
        (4, 1000, 8, 100.0, 2.0, True),  # nearly unpenalised, mostly positives
    ],
)
def test_the_same_optimum_as_scikit_learn(seed, n, d, c, shift, weighted):
    x, y, w = made_up(seed, n, d, shift=shift, weighted=weighted)
    coef, intercept = fit_logistic(x, y, w, c)
    ref_coef, ref_intercept = reference(x, y, w, c)
    assert np.max(np.abs(coef - ref_coef)) < 1e-5
    assert abs(intercept - ref_intercept) < 1e-5
    # and never a worse objective than the reference's
    assert objective(x, y, w, c, coef, intercept) <= objective(
        x, y, w, c, ref_coef, ref_intercept
    ) + 1e-9 * (1 + c * w.sum())


def test_separable_data_stays_finite_under_the_penalty():
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    y = np.array([0.0, 0.0, 1.0, 1.0])
    coef, intercept = fit_logistic(x, y, np.ones(4), 1e6)  # almost no penalty: a huge slope
    assert np.isfinite(coef).all()
    assert np.isfinite(intercept)
    assert coef[0] > 5


def test_a_column_of_zeros_gets_no_weight_and_zero_weight_rows_count_for_nothing():
    x, y, w = made_up(5, 400, 3)
    padded = np.hstack([x, np.zeros((len(x), 1))])  # a repository with no rows of its own
    coef, _intercept = fit_logistic(padded, y, w, 0.05)
    assert coef[-1] == 0.0
    plain, plain_intercept = fit_logistic(x, y, w, 0.05)
    assert np.allclose(coef[:-1], plain, atol=1e-10)
    noise = np.vstack([x, np.full((50, 3), 9.0)])  # rows weighted 0 must not move the fit
    coef0, intercept0 = fit_logistic(
        noise, np.concatenate([y, np.ones(50)]), np.concatenate([w, np.zeros(50)]), 0.05
    )
    assert np.allclose(coef0, plain, atol=1e-9)
    assert abs(intercept0 - plain_intercept) < 1e-9


def test_one_class_only_puts_everything_in_the_intercept():
    x, _, w = made_up(6, 200, 4)
    coef, intercept = fit_logistic(x, np.zeros(200), w, 0.05)
    assert intercept < -5  # the unpenalised intercept says "never"
    assert np.max(np.abs(coef)) < 0.05


def test_the_prior_corpus_pooled_as_the_product_fits_it():
    """fit_pooled on the shipped prior (34 repositories, one intercept each): scikit-learn at a
    tight tolerance lands on the same coefficients; the shipped ones (fitted with its default
    tolerance) are close."""
    prior = riskfit.load_prior()
    seen = {}

    def spy(x, y, w, c, **kwargs):
        seen.update(x=x, y=y, w=w, c=c)
        return fit_logistic(x, y, w, c, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(riskfit, "fit_logistic", spy)
        coef, _ = riskfit.fit_pooled(prior, [])
    assert seen["c"] == C_REGULARISATION
    ours = fit_logistic(seen["x"], seen["y"], seen["w"], seen["c"])
    model = sklearn_linear.LogisticRegression(C=seen["c"], max_iter=20000, tol=1e-8)
    model.fit(seen["x"], seen["y"], sample_weight=seen["w"])
    assert np.max(np.abs(ours[0] - model.coef_[0])) < 1e-3
    assert np.max(np.abs(np.array(coef) - np.array(prior.meta["coef"]))) < 0.2
