"""Membership inference audit: can someone holding the synthetic samples tell the generator's
training records (members) from real records it never saw (non-members)?

Each attack scores every candidate record and is summed up by the ROC AUC of members against
non-members: 0.5 = the samples give members away no more than chance, 1 = every member is told.

    distance   minus the distance to the closest synthetic sample: a member the generator copied
               or hugged sits close to a sample (the full black-box attack of GAN-Leaks, Chen
               et al., CCS 2020).
    density    DOMIAS (van Breugel et al., AISTATS 2023): the synthetic density at the record over
               the density of real reference records there. Overfitting shows as a local excess
               of synthetic density; dividing by the real density keeps records in crowded
               regions, close to many samples anyway, from passing for members.

The reference must be real data from the same distribution that is neither a candidate nor a
training record (a training record is a member whether scored or not), so the density attack
splits the held-out records in two: non-member candidates and the reference.

Both attacks read 0.5 as "nothing given away" only when the held-out records are drawn from the
training records' distribution. When they are not (a later span of a series, another region of
a photo), a generator that draws exactly the training distribution is closer to the members all
the same. So each attack is run again with training records that are not candidates in place of
the samples (`candidates(..., fresh_most=...)`): fresh draws of the training distribution, what
a generator that learned it and copied nothing would give. `plugkit eval` reports that AUC as
the attack's floor: about 0.5 when the held-out records are like the training ones.

Densities are k-nearest-neighbour estimates p(x) = k / (N V_d r_k(x)^d): no bandwidth, no
covariance to invert, any dimension. In their log ratio, d (log r_ref - log r_syn) + constant,
the dimension only scales and the sizes only shift the score, so the AUC does not depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from plugkit.metrics._inputs import features, finite, same_width, strings

MOST = 1_000  # candidates a side: bounds the time; chance moves the AUC by ±0.03 (2 sd) there
FEWEST = 20  # candidates a side below which a measure is left out: chance alone gives ±0.18
# The synthetic density at the finest resolution the samples afford (k = 1: a copied member
# has distance 0), the reference's smoother (k = 5): it only says how crowded the region is.
# Measured on 10-d Gaussians, copies with noise of 0.3 sd: AUC 0.98 with k = 5, 0.96 with 1.
K_SYNTHETIC, K_REFERENCE = 1, 5
TINY = 1e-12  # a copy's distance 0 has no logarithm; TINY ranks it above any real distance
HASHED = 1_024  # columns of the character n-gram counts of text records


@dataclass
class Candidates:
    """Rows of one attack's records: members and non_members equally many, non_members and
    reference disjoint."""

    members: np.ndarray  # rows of the training records
    non_members: np.ndarray  # rows of the held-out records
    reference: np.ndarray  # rows of the held-out records the density attack uses as real data
    # rows of training records that are not candidates (`fresh`): the samples of the floor
    fresh: np.ndarray


def candidates(n_train: int, n_holdout: int, *, seed: int = 0, reference: bool = False,
               most: int = MOST, reference_most: int = 10_000,
               fresh_most: int = 0) -> Candidates:
    """Balanced candidates drawn with `seed`: as many members as non-members, at most `most`.
    With `reference`, at most half the held-out records are non-members and the others (up to
    `reference_most`) the density attack's reference. Both attacks draw from the same random
    orders, so the density attack's candidates are the first of the distance attack's. With
    `fresh_most`, at most half the training records are members and the others (up to
    `fresh_most`) stand in for the samples of the attack's floor (module docstring)."""
    rng = np.random.default_rng(seed)
    train_order, holdout_order = rng.permutation(n_train), rng.permutation(n_holdout)
    m = min(n_train // 2 if fresh_most else n_train,
            n_holdout // 2 if reference else n_holdout, most)
    rest = holdout_order[m:m + reference_most] if reference else holdout_order[:0]
    return Candidates(train_order[:m], holdout_order[:m], rest, train_order[m:m + fresh_most])


def chance_spread(members: int, non_members: int) -> float:
    """Standard deviation of the AUC of random scores (no ties): how far from 0.5 chance
    alone moves it at these sizes (Mann-Whitney U's variance, over n1 n2)."""
    return float(np.sqrt((members + non_members + 1) / (12 * members * non_members)))


def distance_attack(synthetic: object, members: object, non_members: object) -> float:
    """AUC of scoring each candidate by minus its distance to the closest synthetic row."""
    synthetic, members, non_members = _check(synthetic=synthetic, members=members,
                                             non_members=non_members)
    scores = -_kth_distance(np.concatenate([members, non_members]), synthetic, K_SYNTHETIC)
    return _auc(scores, len(members))


def density_attack(synthetic: object, reference: object, members: object,
                   non_members: object) -> float:
    """AUC of scoring each candidate by log p_synthetic(x) - log p_reference(x) (DOMIAS), both
    k-nearest-neighbour densities (module docstring)."""
    synthetic, reference, members, non_members = _check(
        synthetic=synthetic, reference=reference, members=members, non_members=non_members)
    query = np.concatenate([members, non_members])
    k = min(K_REFERENCE, len(reference))
    scores = np.log(_kth_distance(query, reference, k) + TINY) - \
        np.log(_kth_distance(query, synthetic, K_SYNTHETIC) + TINY)
    return _auc(scores, len(members))


def char_ngrams(lines: object) -> np.ndarray:
    """Text records as rows of counts of their character 1- to 3-grams, hashed into HASHED
    columns (deterministic murmurhash: no vocabulary to fit). A copied line has distance 0;
    lines that share most of their n-grams (a name and its misspelling) are close."""
    vectorizer = HashingVectorizer(analyzer="char", ngram_range=(1, 3), n_features=HASHED,
                                   alternate_sign=False, norm=None, lowercase=False)
    return vectorizer.transform(strings(lines, "lines")).toarray()


def _kth_distance(query: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance from each query row to its k-th nearest row of `points`."""
    search = NearestNeighbors(n_neighbors=k).fit(points)
    return search.kneighbors(query, return_distance=True)[0][:, k - 1]


def _auc(scores: np.ndarray, members: int) -> float:
    """ROC AUC of `scores`, the first `members` of them the positives; ties count half."""
    truth = np.arange(len(scores)) < members
    return float(roc_auc_score(truth, scores))


def _check(**sets: object) -> list[np.ndarray]:
    """Every set as finite float64 [N, d] rows (at least one) of the first set's width."""
    arrays = [finite(features(x, name), name) for name, x in sets.items()]
    first = next(iter(sets))
    for name, arr in zip(sets, arrays, strict=True):
        same_width(arrays[0], arr, f"{first} and {name}")
    return arrays
