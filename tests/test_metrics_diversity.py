"""Known answers for within-class diversity: collapsed classes, fresh draws, shrunken ones."""

import numpy as np
import pytest

from plugkit.errors import UsageError
from plugkit.metrics.diversity import class_ratios, mean_pairwise_distance

pytestmark = pytest.mark.usefixtures("one_thread")


def classes_of(rng, per_class, centers):
    """per_class Gaussian points around each center, and their labels."""
    x = np.concatenate([rng.normal(c, 1.0, (per_class, len(c))) for c in centers])
    return x, np.repeat(np.arange(len(centers)), per_class)


CENTERS = np.array([[0.0] * 8, [10.0] * 8, [-10.0] + [0.0] * 7])


def test_mean_pairwise_distance_of_known_points():
    assert mean_pairwise_distance([[0.0, 0.0], [3.0, 4.0]]) == 5.0
    # pairs (0,1) 1, (0,2) 2, (1,2) 1: the mean over distinct pairs, the zero diagonal left out
    assert mean_pairwise_distance([[0.0], [1.0], [2.0]]) == pytest.approx(4 / 3)


def test_one_record_per_class_scores_zero_and_fresh_draws_one():
    rng = np.random.default_rng(0)
    real, y = classes_of(rng, 300, CENTERS)
    fresh, fresh_y = classes_of(rng, 300, CENTERS)
    copies = real[[np.flatnonzero(y == k)[0] for k in fresh_y]]  # every sample its class' first
    assert class_ratios(real, y, copies, fresh_y, 3) == [0.0, 0.0, 0.0]
    assert class_ratios(real, y, fresh, fresh_y, 3) == pytest.approx([1, 1, 1], abs=0.03)


def test_samples_shrunk_toward_their_class_mean_score_the_factor():
    rng = np.random.default_rng(1)
    real, y = classes_of(rng, 200, CENTERS)
    means = np.stack([real[y == k].mean(0) for k in range(3)])
    shrunk = means[y] + 0.5 * (real - means[y])  # distances within a class halved exactly
    assert class_ratios(real, y, shrunk, y, 3) == pytest.approx([0.5, 0.5, 0.5])


def test_diversity_across_classes_does_not_count():
    # the samples of every class spread over all three centers: much pairwise distance, but
    # each class far more varied than its real records
    rng = np.random.default_rng(2)
    real, y = classes_of(rng, 200, CENTERS)
    mixed = rng.permutation(y)
    assert min(class_ratios(real, y, real, mixed, 3)) > 3


def test_sparse_classes_are_none_and_the_cap_is_seeded():
    rng = np.random.default_rng(3)
    real, y = classes_of(rng, 50, CENTERS)
    one = np.array([0] * 100 + [1] * 49 + [2])  # class 2: a single sample, no pair
    ratios = class_ratios(real, y, real, one, 3)
    assert ratios[2] is None and ratios[0] is not None
    capped = class_ratios(real, y, real, y, 3, most=10, seed=5)
    assert capped == class_ratios(real, y, real, y, 3, most=10, seed=5)
    assert capped != class_ratios(real, y, real, y, 3, most=10, seed=6)


@pytest.mark.parametrize("labels, message", [
    (np.zeros(5, dtype=int), "labels must be 6 integers"),
    (np.zeros(6), "labels must be 6 integers"),
])
def test_bad_labels_are_one_clear_error(labels, message):
    x = np.zeros((6, 2))
    with pytest.raises(UsageError, match=message):
        class_ratios(x, np.zeros(6, dtype=int), x, labels, 1)
