"""Membership audit (plugkit.metrics.membership): known answers of the two attacks, and the
measures in `plugkit eval` for a table and for text.

Known answers: samples that copy the training records give every member away (AUC near 1);
samples drawn fresh from the same distribution give none away (AUC 0.5 up to chance, whose
standard deviation chance_spread gives at each size)."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from plugkit import evaluate
from plugkit.errors import UsageError
from plugkit.metrics import membership

DIM = 8


def gaussian_sets(seed=0, n_train=400, n_holdout=800):
    """Training and held-out records of one 8-d distribution with a crowded core and a sparse
    halo (a density the distance attack alone would misread)."""
    rng = np.random.default_rng(seed)

    def draw(n):
        x = rng.normal(size=(n, DIM))
        x[rng.random(n) < 0.2] *= 3
        return x

    return draw(n_train), draw(n_holdout), draw


def attack_both(synthetic, train, holdout, seed=0):
    near = membership.candidates(len(train), len(holdout), seed=seed)
    dense = membership.candidates(len(train), len(holdout), seed=seed, reference=True)
    return (membership.distance_attack(synthetic, train[near.members],
                                       holdout[near.non_members]),
            membership.density_attack(synthetic, holdout[dense.reference],
                                      train[dense.members], holdout[dense.non_members]),
            len(near.members), len(dense.members))


def test_copies_of_the_training_records_give_every_member_away():
    train, holdout, _ = gaussian_sets()
    distance, density, _, _ = attack_both(train.copy(), train, holdout)
    assert distance == 1.0 and density == 1.0


def test_near_copies_are_caught_too():
    train, holdout, _ = gaussian_sets()
    noisy = train + 0.3 * np.random.default_rng(1).normal(size=train.shape)
    distance, density, _, _ = attack_both(noisy, train, holdout)
    assert distance > 0.9 and density > 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fresh_samples_give_nothing_away(seed):
    train, holdout, draw = gaussian_sets(seed)
    distance, density, near, dense = attack_both(draw(2_000), train, holdout, seed)
    # 4 standard deviations of chance: 0.082 at 400 a side (both attacks: 400 training records;
    # the density attack's reference is the other 400 held-out records)
    assert abs(distance - 0.5) < 4 * membership.chance_spread(near, near)
    assert abs(density - 0.5) < 4 * membership.chance_spread(dense, dense)


def test_copies_of_half_the_members_put_the_auc_halfway():
    # a generator that memorized half its training records, fresh elsewhere: the copied
    # members rank first, the others like non-members: AUC 0.5 + 0.5 / 2
    train, holdout, draw = gaussian_sets()
    near = membership.candidates(len(train), len(holdout), seed=0)
    copied = train[near.members[::2]]
    synthetic = np.concatenate([copied, draw(2_000)])
    distance = membership.distance_attack(synthetic, train[near.members],
                                          holdout[near.non_members])
    assert distance == pytest.approx(0.75, abs=0.03)


def test_candidates_are_balanced_disjoint_seeded_and_capped():
    near = membership.candidates(5_000, 3_000, seed=3)
    dense = membership.candidates(5_000, 3_000, seed=3, reference=True, reference_most=1_500)
    assert len(near.members) == len(near.non_members) == membership.MOST
    assert len(dense.members) == len(dense.non_members) == membership.MOST
    assert len(dense.reference) == 1_500 and not set(dense.reference) & set(dense.non_members)
    assert len(set(near.members)) == membership.MOST  # no record twice
    # the density attack's candidates are the first of the distance attack's
    np.testing.assert_array_equal(dense.members, near.members[:len(dense.members)])
    again = membership.candidates(5_000, 3_000, seed=3)
    np.testing.assert_array_equal(again.non_members, near.non_members)
    assert not np.array_equal(membership.candidates(5_000, 3_000, seed=4).members, near.members)
    small = membership.candidates(100, 30, seed=0, reference=True)
    assert len(small.members) == 15 and len(small.reference) == 15  # held-out: half and half


def test_chance_spread_is_the_spread_of_random_scores():
    # 4,000 attacks with random scores, 20 a side: AUC = Mann-Whitney U / (20 * 20), U from
    # the members' ranks
    ranks = rankdata(np.random.default_rng(0).random((4_000, 40)), axis=1)
    aucs = (ranks[:, :20].sum(1) - 20 * 21 / 2) / 400
    assert np.std(aucs) == pytest.approx(membership.chance_spread(20, 20), rel=0.05)
    assert membership._auc(np.arange(40.0)[::-1], 20) == 1.0  # members first: all told


def test_char_ngrams_put_a_copied_line_at_distance_zero():
    rows = membership.char_ngrams(["anna", "anna", "annie", "bob"])
    assert rows.shape == (4, membership.HASHED)
    assert np.linalg.norm(rows[0] - rows[1]) == 0
    assert 0 < np.linalg.norm(rows[0] - rows[2]) < np.linalg.norm(rows[0] - rows[3])
    np.testing.assert_array_equal(rows, membership.char_ngrams(["anna", "anna", "annie", "bob"]))


def test_mismatched_widths_are_a_usage_error():
    with pytest.raises(UsageError, match="synthetic and members"):
        membership.distance_attack(np.zeros((5, 3)), np.zeros((5, 4)), np.zeros((5, 3)))


def measures(report):
    return {m["name"]: m for m in report.measures}


@pytest.fixture
def gaussian_tables(tmp_path):
    """train.csv, hold.csv and fresh.csv: 300 rows each of one table (3 numbers, a category)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 3))
    df = pd.DataFrame(x, columns=["a", "b", "c"]).assign(
        kind=np.where(x[:, 0] + rng.normal(size=900) > 0, "up", "down"))
    paths = {}
    for i, name in enumerate(("train", "hold", "fresh")):
        paths[name] = tmp_path / f"{name}.csv"
        df.iloc[300 * i:300 * (i + 1)].to_csv(paths[name], index=False)
    return paths


def test_eval_catches_a_copied_table_and_passes_a_fresh_one(gaussian_tables):
    p = gaussian_tables
    copied = measures(evaluate(str(p["train"]), against=str(p["train"]),
                               holdout=str(p["hold"])))
    # the floors: 150 training records a side against the other 150 as samples (density: 150
    # held-out ones split into 75 non-members and 75 reference), like the held-out records
    sides = {"membership AUC (distance)": 150, "membership AUC (density)": 75}
    for name, side in sides.items():
        assert copied[name]["better"] == "≈ floor"
        assert abs(copied[name]["floor"] - 0.5) < 4 * membership.chance_spread(side, side)
        assert copied[name]["value"] == 1.0, name
    fresh = evaluate(str(p["fresh"]), against=str(p["train"]), holdout=str(p["hold"]))
    m = measures(fresh)
    # 300 candidates a side (density: 150, the other 150 held-out rows its reference)
    assert abs(m["membership AUC (distance)"]["value"] - 0.5) < 4 * membership.chance_spread(
        300, 300)
    assert abs(m["membership AUC (density)"]["value"] - 0.5) < 4 * membership.chance_spread(
        150, 150)
    assert fresh.details["membership"] == {"distance_candidates": 300, "density_candidates": 150,
                                           "density_reference": 150}
    assert any("300 training against 300 held-out records" in n for n in fresh.summary["notes"])


def test_the_floor_reads_a_held_out_part_unlike_the_training_one(tmp_path):
    """Held-out records from elsewhere (a later span, another region of a photo): fresh draws
    of the training distribution are closer to the members all the same. The floor, the attack
    with training records as the samples, shows it; copies still stand out above it."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1_300, 3))
    x[900:1_200] += 1.0  # the held-out part, shifted by one sd in every column
    frames = {name: pd.DataFrame(x[rows], columns=["a", "b", "c"]) for name, rows in
              (("train", slice(0, 600)), ("fresh", slice(600, 900)), ("hold", slice(900, 1_200)))}
    for name, frame in frames.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    paths = {name: str(tmp_path / f"{name}.csv") for name in frames}
    fresh = measures(evaluate(paths["fresh"], against=paths["train"], holdout=paths["hold"]))
    copied = measures(evaluate(paths["train"], against=paths["train"], holdout=paths["hold"]))
    for name, side in (("membership AUC (distance)", 300), ("membership AUC (density)", 150)):
        assert fresh[name]["value"] > 0.6, name  # the shift alone gives members away
        assert fresh[name]["floor"] > 0.6, name  # and the floor says so
        assert abs(fresh[name]["value"] - fresh[name]["floor"]) < \
            4 * membership.chance_spread(side, side), name
        assert copied[name]["value"] == 1.0 > copied[name]["floor"] + 0.1, name


def names(rng, n):
    """Made-up names: a capital, then 3 to 7 letters from alternating consonants and vowels."""
    consonants, vowels = np.array(list("bdfgklmnprstvz")), np.array(list("aeiou"))
    out = []
    for length in rng.integers(4, 9, n):
        letters = [rng.choice(consonants if i % 2 == 0 else vowels) for i in range(length)]
        out.append("".join(letters).capitalize())
    return out


def test_eval_text_catches_copied_lines_and_passes_fresh_ones(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("train", "hold", "fresh"):
        (tmp_path / f"{name}.txt").write_text("\n".join(names(rng, 200)) + "\n")
    files = {name: str(tmp_path / f"{name}.txt") for name in ("train", "hold", "fresh")}
    copied = measures(evaluate(files["train"], against=files["train"], holdout=files["hold"]))
    assert copied["membership AUC (distance)"]["value"] > 0.9
    assert copied["membership AUC (density)"]["value"] > 0.9
    fresh = measures(evaluate(files["fresh"], against=files["train"], holdout=files["hold"]))
    assert abs(fresh["membership AUC (distance)"]["value"] - 0.5) < \
        4 * membership.chance_spread(200, 200)
    assert abs(fresh["membership AUC (density)"]["value"] - 0.5) < \
        4 * membership.chance_spread(100, 100)


def test_eval_is_deterministic_under_its_seed(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("train", "hold", "fresh"):
        (tmp_path / f"{name}.txt").write_text("\n".join(names(rng, 100)) + "\n")
    runs = [measures(evaluate(str(tmp_path / "fresh.txt"), against=str(tmp_path / "train.txt"),
                              holdout=str(tmp_path / "hold.txt"), seed=seed))
            for seed in (5, 5)]
    for name in ("membership AUC (distance)", "membership AUC (density)"):
        assert runs[0][name]["value"] == runs[1][name]["value"]


def test_too_few_held_out_records_leave_the_attacks_out_with_a_note(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "train.txt").write_text("\n".join(names(rng, 100)) + "\n")
    for size in (30, 10):
        (tmp_path / f"hold{size}.txt").write_text("\n".join(names(rng, size)) + "\n")
    report = evaluate(str(tmp_path / "train.txt"), against=str(tmp_path / "train.txt"),
                      holdout=str(tmp_path / "hold30.txt"))
    m = measures(report)
    assert "membership AUC (distance)" in m  # 30 a side
    assert "membership AUC (density)" not in m  # 15 a side and a reference of 15
    assert any("the density attack is left out: it needs 40 held-out records" in note
               for note in report.summary["notes"])
    report = evaluate(str(tmp_path / "train.txt"), against=str(tmp_path / "train.txt"),
                      holdout=str(tmp_path / "hold10.txt"))
    assert not any(name.startswith("membership") for name in measures(report))
    assert any(note.startswith("membership AUCs left out") for note in report.summary["notes"])
