"""`plugkit eval`: every measure of one modality, each next to its real-vs-real floor.

    report = evaluate("runs/vae-digits", out=Path("reports/vae-digits"))
    report = evaluate("synthetic.csv", against="adult", target="income")

A measure compares the synthetic set with a reference set of real records; its floor is the same
measure between the reference and as many other real records (plugkit.metrics.sets), so
"synthetic 4.1, floor 1.3" reads as "three times further from the real data than real data".
With few held-out records the comparison is repeated on random splits of all real records, and
each figure is the mean with its standard deviation over the repeats ("0.81 ± 0.03").
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from plugkit import rundir
from plugkit.errors import PlugkitError, UsageError, out_of_memory
from plugkit.formats import sequence
from plugkit.metrics import detection, distances, figures, membership, sequences, sets, tables, text
from plugkit.metrics.report import Report, stat

Stat = tuple[float | None, float | None]  # mean, standard deviation over repeats (None: one)
KID_SUBSETS = 100  # shared out over the repeats: the same work as one comparison
PANELS = 24  # per-column panels per figure: more columns, more figures


def evaluate(source: Any, *, against: str | None = None, holdout: str | None = None,
             modality: str | None = None, n: int | None = None, seed: int = 0,
             target: str | None = None, out: Path | None = None,
             weights: str = "best", settings: dict | None = None,
             window: int | None = None) -> Report:
    """Compares `source` (a trained run, plugkit.runs.Run, or a sample file with the real data
    `against`) with real data; writes the report to `out` (whole, or not at all) and returns
    it. `settings`: the sampler settings a run's samples are drawn with, by name (as for
    `plugkit sample`); `window`: a sample file of windows is compared with the windows of that
    length of the series `against` (and `holdout`) holds. plugkit.evaluate takes a run's folder
    too."""
    try:
        return _evaluate(source, against, holdout, modality, n, seed, target, out, weights,
                         settings or {}, window)
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise
        asked = f"`n` {n:,}" if n is not None else "the default `n`"
        raise PlugkitError(f"out of memory evaluating {source} with {asked}: lower `n`; "
                           "nothing was written") from None


def _evaluate(source, against, holdout, modality, n, seed, target, out, weights,
              settings, window) -> Report:
    if hasattr(source, "draw"):  # a Run: its own data, split as training split it
        if holdout or against or window:
            raise UsageError("`against`/`holdout`/`window` are for sample files; a run is "
                             "compared with its own training data")
        compared = sets.from_run(source, n, seed, weights, settings)
    elif settings:
        raise UsageError("sampler settings are for runs: a sample file is already drawn")
    elif (Path(source) / rundir.RUN_JSON).exists():
        raise UsageError(f"{source} is a run: evaluate it with plugkit.evaluate(path) or "
                         "plugkit.load(path).evaluate()")
    elif not Path(source).exists() and not _builtin(str(source)):
        raise UsageError(f"{source}: not found; give a run directory or a sample file")
    else:
        compared = sets.from_file(str(source), against, holdout, modality, n, seed, window)
    c = compared
    report = Report(f"plugkit eval: {c.source}", {
        "source": c.source, "modality": c.modality, "n": c.n, "compared": c.compared,
        "repeats": c.repeats, "design": "pooled" if c.pooled else "holdout",
        "real_size": c.real_size, "train_size": len(c.train), "holdout_size": len(c.holdout),
        "seed": seed, **({"weights": weights, "settings": settings} if c.run is not None
                         else {}),
        "notes": list(c.notes)}, [])
    MODALITIES[c.modality](c, report, seed, target)
    if c.run is not None:
        _heldout_likelihood(c, report)
        _training_curves(c.run, report)
    if out is not None:
        report.write(Path(out))
    return report


def _builtin(name: str) -> bool:
    from plugkit.data import builtin

    return name in builtin.REGISTRY


def _add(report: Report, name: str, value: Any, floor: Any, better: str, help: str,
         spread: Any = None, floor_spread: Any = None) -> None:
    report.measures.append({"name": name, "value": _num(value), "spread": _num(spread),
                            "floor": _num(floor), "floor_spread": _num(floor_spread),
                            "better": better, "help": help})


def _add_stats(report: Report, name: str, pair: tuple[Stat, Stat], better: str,
               help: str) -> None:
    (value, spread), (floor, floor_spread) = pair
    _add(report, name, value, floor, better, help, spread, floor_spread)


def _num(value: Any) -> Any:
    return None if value is None else float(value)


def _repeat(comparisons: list[sets.Comparison], real: Callable, synthetic: Callable,
            once: Callable) -> dict[Any, tuple[Stat, Stat]]:
    """once(reference, other) -> {key: value} on every comparison, against the synthetic rows
    and against the floor's real rows; per key (synthetic, floor), each a Stat over repeats.
    real(rows) / synthetic(rows) give the records (or their features) at `rows`."""
    pairs = []
    for k in comparisons:
        reference = real(k.reference)
        pairs.append((once(reference, synthetic(k.synthetic)), once(reference, real(k.real))))
    return {key: (_stat([s[key] for s, _ in pairs]), _stat([f[key] for _, f in pairs]))
            for key in pairs[0][0]}


def _stat(values: list[Any]) -> Stat:
    if any(v is None for v in values):
        return None, None
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else None


def _privacy(report: Report, c: sets.Sets, rows: Callable[[Any], np.ndarray],
             seed: int) -> None:
    """Distance to the closest training record, synthetic against fresh real data: every
    training record, every held-out one, up to MAX_N samples; then the membership attacks.
    rows(x) gives the flat rows."""
    synthetic = rows(c.synthetic_x(np.arange(min(c.n, sets.MAX_N))))
    train, holdout = rows(c.train.x), rows(c.holdout.x)
    dcr = distances.privacy(synthetic, train, holdout)
    _add(report, "DCR ratio", dcr["dcr_ratio"], 1.0, "≈ 1 (0 = copies)",
         "median distance to the closest training record, over the holdout's")
    _add(report, "closer than holdout", dcr["closer_than_holdout"], 0.5, "≈ 0.5",
         "share of samples closer to the training data than the median held-out record")
    _add(report, "exact copies", distances.exact_copy_rate(synthetic, train),
         distances.exact_copy_rate(holdout, train), "lower",
         "share of samples identical to a training record")
    _membership(report, c, rows, seed, synthetic)


def _membership(report: Report, c: sets.Sets, rows: Callable[[Any], np.ndarray],
                seed: int, synthetic: np.ndarray | None = None) -> None:
    """Membership attacks (plugkit.metrics.membership): can the samples (up to MAX_N) tell
    training records from held-out ones? Each is left out, with a note, below FEWEST a side.
    Each floor is the same attack with training records that are not candidates as the
    samples (None below FEWEST a side)."""
    n_train, n_holdout, fewest = len(c.train), len(c.holdout), membership.FEWEST
    near = membership.candidates(n_train, n_holdout, seed=seed)
    dense = membership.candidates(n_train, n_holdout, seed=seed, reference=True,
                                  reference_most=sets.MAX_N)
    note = _membership_note(c, len(near.members), len(dense.members), len(dense.reference))
    report.summary["notes"].append(note)
    if len(near.members) < fewest:
        return
    if synthetic is None:  # the rows of up to MAX_N samples, unless _privacy made them
        synthetic = rows(c.synthetic_x(np.arange(min(c.n, sets.MAX_N))))

    def real(candidates: membership.Candidates) -> tuple[np.ndarray, ...]:
        """Its members, non-members and reference as rows (real rows: training ones first)."""
        return (rows(c.real_x(candidates.members)),
                rows(c.real_x(candidates.non_members + n_train)),
                rows(c.real_x(candidates.reference + n_train)) if len(candidates.reference)
                else None)

    def attack(candidates: membership.Candidates, samples: np.ndarray | None = None) -> Any:
        members, non_members, reference = real(candidates)
        samples = rows(c.real_x(candidates.fresh)) if samples is None else samples
        if reference is None:
            return membership.distance_attack(samples, members, non_members)
        return membership.density_attack(samples, reference, members, non_members)

    def floor(reference: bool) -> Any:
        fresh = membership.candidates(n_train, n_holdout, seed=seed, reference=reference,
                                      reference_most=sets.MAX_N, fresh_most=sets.MAX_N)
        return attack(fresh) if len(fresh.members) >= fewest else None

    _add(report, "membership AUC (distance)", attack(near, synthetic), floor(False), "≈ floor",
         "ROC AUC of telling training from held-out records by their distance to the closest "
         "sample; 1 = every training record given away; floor: the same with training "
         "records that are not candidates as the samples (about 0.5 unless the held-out "
         "records differ from the training ones)")
    if len(dense.members) < fewest:
        return
    _add(report, "membership AUC (density)", attack(dense, synthetic), floor(True), "≈ floor",
         "the same by the samples' density at the record over that of other held-out "
         "records (DOMIAS, k-NN densities): local overfitting, fair to crowded regions")
    report.details["membership"] = {"distance_candidates": len(near.members),
                                    "density_candidates": len(dense.members),
                                    "density_reference": len(dense.reference)}


def _membership_note(c: sets.Sets, near: int, dense: int, reference: int) -> str:
    """What the membership attacks measured on, and how far chance alone moves their AUC."""
    fewest, n_train, n_holdout = membership.FEWEST, len(c.train), len(c.holdout)
    if near < fewest:
        return (f"membership AUCs left out: the attacks need {fewest} training and {fewest} "
                f"held-out records (density: {2 * fewest} held-out, half of them its real "
                f"reference); there are {n_train:,} and {n_holdout:,}")
    spread = f"±{2 * membership.chance_spread(near, near):.2f}"
    if dense < fewest:
        return (f"membership attacks: {near:,} training against {near:,} held-out records "
                f"(chance alone moves the AUC {spread}, 2 sd); the density attack is left out: "
                f"it needs {2 * fewest} held-out records, half of them its real reference, "
                f"there are {n_holdout:,}")
    return (f"membership attacks: {near:,} training against {near:,} held-out records (chance "
            f"alone moves the AUC {spread}, 2 sd); density: {dense:,} against {dense:,}, the "
            f"other {reference:,} held-out records its real reference "
            f"(±{2 * membership.chance_spread(dense, dense):.2f})")


def _too_few(c: sets.Sets, report: Report, what: str) -> bool:
    """Detection's 5 folds need 5 records a side; with fewer the measure is left out."""
    if c.compared >= detection.FOLDS:
        return False
    report.summary["notes"].append(f"{what} left out: {detection.FOLDS}-fold cross-validation "
                                   f"needs {detection.FOLDS} records a side, the comparisons "
                                   f"have {c.compared}")
    return True


def _images(c: sets.Sets, report: Report, seed: int, target: str | None) -> None:
    from plugkit.metrics import features

    net = features.feature_net(c.train.x, c.train.labels, seed=seed)
    comparisons = c.comparisons(seed)
    shown = _shown(c, seed)
    used = np.unique(np.concatenate([c.reference_rows(), *[np.concatenate([k.reference, k.real])
                                                           for k in comparisons]]))
    real = np.zeros((c.real_size, features.DIM))
    real[used] = net.features(c.real_x(used))  # only the records some comparison or figure takes
    synthetic = net.features(c.synthetic.x)
    detect = not _too_few(c, report, "detection accuracy")

    def once(a: np.ndarray, b: np.ndarray) -> dict:
        out = {"fd": distances.frechet_distance(a, b),
               "kid": distances.kid(a, b, subsets=KID_SUBSETS // c.repeats, seed=seed)["kid"],
               **distances.prdc(a, b)}
        if detect:
            out["detection"] = detection.detection(a, b, model="logistic", seed=seed)["accuracy"]
        return out

    r = _repeat(comparisons, lambda rows: real[rows], lambda rows: synthetic[rows], once)
    _add_stats(report, "Fréchet distance", r["fd"], "lower",
               "between Gaussians fitted to classifier features")
    _add_stats(report, "KID", r["kid"], "lower",
               "kernel inception distance (unbiased MMD², cubic kernel) on the same features")
    for key in ("precision", "recall", "density", "coverage"):
        _add_stats(report, key, r[key], "higher",
                   "k-NN manifold measure of Naeem et al. 2020 (k = 5)")
    if detect:
        _add_stats(report, "detection accuracy", r["detection"], "≈ 0.5",
                   "5-fold CV accuracy of logistic regression telling real from synthetic")
    if c.synthetic.labels is not None and net.has_classes:
        _add(report, "label accuracy", (net.predict(c.synthetic.x) == c.synthetic.labels).mean(),
             (net.predict(c.holdout.x) == c.holdout.labels).mean(), "higher",
             "how often the classifier gives a sample the label it was generated for; the "
             "floor: its accuracy on the held-out records")
    _diversity(c, report, comparisons, real, synthetic, seed)
    report.details["feature_net_accuracy"] = net.accuracy
    _privacy(report, c, lambda x: x.reshape(len(x), -1), seed)
    report.add_figure("real and synthetic samples", figures.image_grids(
        c.real_x(shown), c.synthetic.x, real_title="real" if c.pooled else "real (held out)"))
    report.add_figure("classifier features, first two principal axes",
                      figures.embedding(real[c.reference_rows()], synthetic, "features"))


def _diversity(c: sets.Sets, report: Report, comparisons: list[sets.Comparison],
               real: np.ndarray, synthetic: np.ndarray, seed: int) -> None:
    """Within-class diversity (plugkit.metrics.diversity) of labelled samples in the feature
    space, per comparison: per class, the samples' mean pairwise distance over the reference's;
    the floor puts the floor side's real records in the samples' place."""
    from plugkit.metrics import diversity

    if c.train.labels is None or c.holdout.labels is None:
        return  # no classes in the real data: nothing to measure within
    if c.synthetic.labels is None:
        report.summary["notes"].append(
            "within-class diversity left out: the samples carry no labels (an unconditional "
            "model, or a sample file without labels)")
        return
    labels = np.concatenate([c.train.labels, c.holdout.labels])  # real rows: training first
    classes = int(max(labels.max(), c.synthetic.labels.max())) + 1

    def once(a: tuple, b: tuple) -> dict:
        ratios = diversity.class_ratios(*a, *b, classes, seed=seed)
        kept = [r for r in ratios if r is not None]
        return {"mean": np.mean(kept) if kept else None, "min": min(kept, default=None),
                **{k: r for k, r in enumerate(ratios)}}

    r = _repeat(comparisons, lambda rows: (real[rows], labels[rows]),
                lambda rows: (synthetic[rows], c.synthetic.labels[rows]), once)
    help = ("per class, mean pairwise feature distance of its samples over that of real records "
            "of the class, {}; 0 = one image a class. The floor: other real records")
    for key, what in (("mean", "averaged over the classes"), ("min", "the least diverse class")):
        _add_stats(report, f"within-class diversity ({key})", r[key], "≈ 1 (0 = collapsed)",
                   help.format(what))
    _per_class(report, r, c.train.classes or [], classes)
    counts = [np.bincount(y, minlength=classes) for y in (
        labels[comparisons[0].reference], c.synthetic.labels[comparisons[0].synthetic],
        labels[comparisons[0].real])]
    fewest, most = min(n.min() for n in counts), min(max(n.max() for n in counts), diversity.MOST)
    report.summary["notes"].append(
        f"within-class diversity: {fewest:,}–{most:,} records a class and side (at most "
        f"{diversity.MOST:,}, a seeded subset), {classes} classes"
        + (", those with under 2 on a side left out" if fewest < 2 else ""))


def _per_class(report: Report, r: dict, names: list[str], classes: int) -> None:
    """Within-class diversity of each class: in details, and as a table least diverse first
    (a class left out, None, last)."""
    rows = [{"class": names[k] if k < len(names) else str(k), "synthetic": s, "spread": ss,
             "floor": f, "floor_spread": fs} for k in range(classes)
            for (s, ss), (f, fs) in [r[k]]]
    report.details["within_class_diversity"] = rows
    order = sorted(rows, key=lambda row: np.inf if row["synthetic"] is None else row["synthetic"])
    report.add_table("within-class diversity per class, least diverse first",
                     ["class", "synthetic", "real floor"],
                     [[row["class"], stat(row["synthetic"], row["spread"]),
                       stat(row["floor"], row["floor_spread"])] for row in order])


def _shown(c: sets.Sets, seed: int, most: int = 64) -> np.ndarray:
    """The real records a grid shows: the first held-out ones, or a random few of all."""
    rows = c.reference_rows()
    if not c.pooled or len(rows) <= most:
        return rows[:most]
    return np.sort(np.random.default_rng(seed).choice(rows, most, replace=False))


def _tables(c: sets.Sets, report: Report, seed: int, target: str | None) -> None:
    from plugkit.formats import tabular

    detect = not _too_few(c, report, "detection AUC")

    def once(a: Any, b: Any) -> dict:
        fidelity = tables.column_fidelity(a, b)
        tvs = [col["tv"] for col in fidelity["columns"].values() if "tv" in col]
        out = {"ks_mean": fidelity["ks_mean"], "tv_mean": fidelity["tv_mean"],
               "tv_max": max(tvs) if tvs else None,
               "association": tables.association_difference(a, b)["mean_abs_diff"]}
        if detect:
            out["detection"] = tables.table_detection(a, b, seed=seed)["auc"]
        for name, col in fidelity["columns"].items():
            out["column", name] = col.get("ks", col.get("tv"))
            out["missing", name] = abs(col["missing_rate_diff"])
        return out

    r = _repeat(c.comparisons(seed), c.real_x, c.synthetic_x, once)
    for key, label in (("ks_mean", "KS mean (numeric columns)"),
                       ("tv_mean", "TV mean (categorical columns)")):
        _add_stats(report, label, r[key], "lower",
                   "per-column distance between the marginal distributions, averaged")
    _add_stats(report, "TV max (categorical columns)", r["tv_max"], "lower",
               "the largest per-column total variation")
    _add_stats(report, "association difference", r["association"], "lower",
               "mean |difference| of the pairwise correlation / Cramér's V / correlation ratio")
    if detect:
        _add_stats(report, "detection AUC", r["detection"], "≈ 0.5",
                   "5-fold CV ROC AUC of gradient boosting telling real from synthetic rows")
    target = target or c.meta.get("target")
    if target is not None:
        _tstr(c, report, seed, target)
    columns = _worst_first(r, c.meta["columns"])
    report.details["columns"] = columns
    report.add_table("columns, worst first",
                     ["column", "distance", "synthetic", "real floor", "missing-rate gap",
                      "over floor"],
                     [[col["name"], col["measure"], stat(col["synthetic"], col["spread"]),
                       stat(col["floor"], col["floor_spread"]), _missing(col),
                       f"{col['excess']:+.3f}"] for col in columns])
    encoding = c.meta["encoding"]
    _privacy(report, c, lambda x: tabular.encode(x, encoding), seed)
    real = c.real_x(c.reference_rows())
    for start in range(0, len(columns), PANELS):
        page = columns[start:start + PANELS]
        where = "" if len(columns) <= PANELS else \
            f", columns {start + 1}–{start + len(page)} of {len(columns)}"
        report.add_figure(f"per-column distributions, worst first (blue real, orange "
                          f"synthetic){where}",
                          figures.histograms(real, c.synthetic.x, [col["name"] for col in page],
                                             c.meta["columns"], [_title(col) for col in page]))
    if len(c.meta["columns"]) > 1:
        report.add_figure("pairwise associations: real, synthetic and their |difference| "
                          "(Pearson, Cramér's V, correlation ratio)",
                          figures.associations(real, c.synthetic.x, c.meta["columns"]))
    report.add_figure("encoded rows, first two principal axes",
                      figures.embedding(tabular.encode(real, encoding),
                                        tabular.encode(c.synthetic.x, encoding), "rows"))


def _tstr(c: sets.Sets, report: Report, seed: int, target: str) -> None:
    """Train on synthetic, test on real: on small data by cross-validation over every real
    record (tables.tstr_cv), else on the held-out records (tables.tstr)."""
    help = "train on synthetic, test on real; the floor trains on real data of the same size"
    if not c.pooled:
        k = c.comparisons(seed)[0]
        u = tables.tstr(c.synthetic_x(k.synthetic), c.real_x(k.real), c.real_x(k.reference),
                        target, seed=seed)
        _add(report, f"TSTR {u['metric']} ({target})", u["synthetic"], u["real"], "higher",
             help)
        return
    rows = np.arange(c.real_size)
    if len(rows) > sets.POOLED_N:
        rows = np.sort(np.random.default_rng(seed).choice(rows, sets.POOLED_N, replace=False))
    u = tables.tstr_cv(c.synthetic.x, c.real_x(rows), target, repeats=sets.REPEATS, seed=seed)
    _add(report, f"TSTR {u['metric']} ({target})", u["synthetic"], u["real"], "higher",
         help + " (cross-validated over all real records)", u["synthetic_std"], u["real_std"])
    report.summary["notes"].append(
        f"TSTR: {u['folds']}-fold cross-validation over {len(rows):,} real records, "
        f"{u['repeats']} repeats; in each fold one model learns from {u['train_rows']:,} "
        "synthetic records, the floor's from as many real ones, and both are scored on the "
        "fold's real records, which include records the generator trained on (a generator "
        "that copies them scores above the floor: see exact copies)")


def _worst_first(r: dict, kinds: dict[str, str]) -> list[dict]:
    """Every column with its distance (KS or TV), its missing-rate gap (|synthetic - real|
    share of empty cells: KS reads only the values present), their floors, and its excess:
    the larger of the two over its floor; the largest excess first."""
    columns = []
    for name, kind in kinds.items():
        (value, spread), (floor, floor_spread) = r["column", name]
        (missing, _), (missing_floor, _) = r["missing", name]
        columns.append({"name": name, "kind": kind, "measure": "KS" if kind == "numeric"
                        else "TV", "synthetic": value, "spread": spread, "floor": floor,
                        "floor_spread": floor_spread, "missing_gap": missing,
                        "missing_gap_floor": missing_floor,
                        "excess": max(value - floor, missing - missing_floor)})
    return sorted(columns, key=lambda col: -col["excess"])


def _missing(col: dict) -> str:
    return f"{col['missing_gap']:.3f} (floor {col['missing_gap_floor']:.3f})"


def _title(col: dict) -> str:
    title = f"{col['name']}\n{col['measure']} {col['synthetic']:.3f} (floor {col['floor']:.3f})"
    if col["missing_gap"] > col["missing_gap_floor"]:
        title += f", missing-rate gap {col['missing_gap']:.2f}"
    return title


def _text(c: sets.Sets, report: Report, seed: int, target: str | None) -> None:
    samples = c.synthetic.x
    novelty = text.novelty(samples, c.train.x, c.holdout.x)
    _add(report, "copies of training lines", novelty["copied"],
         distances.exact_copy_rate(c.holdout.x, c.train.x), "lower",
         "share of samples that are a training line; the floor: held-out lines that are")
    _add(report, "new", novelty["new"], None, "higher",
         "share of samples in neither the training nor the held-out data")
    _add(report, "held-out only", novelty["holdout_only"], None, "",
         "share of samples that are a held-out line the model never saw")

    def once(a: list[str], b: list[str]) -> dict:
        return {"char": text.char_distance(a, b), "length": text.length_distance(a, b)["ks"],
                # properties of one set: the synthetic one's, with the reference's as floor
                "unique": _unique(b), "distinct": text.distinct_n(b, 2),
                "unique_ref": _unique(a), "distinct_ref": text.distinct_n(a, 2)}

    r = _repeat(c.comparisons(seed), c.real_x, c.synthetic_x, once)
    _add_stats(report, "unique", (r["unique"][0], r["unique_ref"][0]), "≈ floor",
               "distinct samples over samples: low means mode collapse")
    _add_stats(report, "distinct-2", (r["distinct"][0], r["distinct_ref"][0]), "≈ floor",
               "distinct character bigrams over all")
    _add_stats(report, "character distance", r["char"], "lower",
               "total variation between character frequencies")
    _add_stats(report, "length KS", r["length"], "lower",
               "KS statistic between line-length distributions")
    # lines as character n-gram counts: a copied line sits at distance 0 from its original
    _membership(report, c, membership.char_ngrams, seed)
    report.details["samples"] = samples[:20]
    report.add_figure("characters and line lengths (blue real, orange synthetic)",
                      figures.text_distributions(c.real_x(c.reference_rows()), samples))


def _unique(items: list[str]) -> float:
    return len(set(items)) / len(items)


UNITS = {"text": ("nats/char", "per character, end of line included"),
         "sequence": ("nats/value", "per value"), "image": ("nats/image", "per image"),
         "table": ("nats/row", "per row")}


def _heldout_likelihood(c: sets.Sets, report: Report) -> None:
    """The model's negative log-likelihood of the held-out records, for any family whose
    validation loss is one (Family.likelihood)."""
    nll = _heldout_nll(c)
    if nll is not None:
        unit, per = UNITS[c.modality]
        _add(report, f"held-out NLL ({unit})", nll, None, "lower",
             f"the model's negative log-likelihood {per}, on records it never trained on")


def _heldout_nll(c: sets.Sets) -> float | None:
    """The family's own held-out loss (with the weights the samples came from), when the
    family says it is a likelihood."""
    from plugkit.formats import codec
    from plugkit.trainer import validate

    family = c.family
    if family is None or not type(family).likelihood:
        return None
    # in the representation the model was trained in: the training data's vocabulary, table
    # encoding or moments, not those a test part or a holdout file would make of itself
    x, y = codec.encode(dataclasses.replace(c.holdout, meta=c.meta))
    return validate(family, x, y, 256, family.device)


def _sequences(c: sets.Sets, report: Report, seed: int, target: str | None) -> None:
    detect = not _too_few(c, report, "detection accuracy")

    Records = tuple[np.ndarray, np.ndarray | None]  # windows, and where each starts (or None)

    def once(reference: Records, other: Records) -> dict:
        (a, starts), (b, _) = reference, other
        out = {"ks": sequences.marginal_distance(a, b)["ks_mean"],
               "acf": sequences.autocorrelation_distance(a, b)["acf_distance"]}
        if detect:
            out["detection"] = sequences.sequence_detection(a, b, seed=seed,
                                                            starts=starts)["accuracy"]
        return out

    def real(rows: np.ndarray) -> Records:
        return c.real_x(rows), c.starts_of(rows)  # the starts: see sequence_detection

    def synthetic(rows: np.ndarray) -> Records:
        return c.synthetic_x(rows), None

    comparisons = c.comparisons(seed)
    r = _repeat(comparisons, real, synthetic, once)
    _add_stats(report, "marginal KS", r["ks"], "lower",
               "KS statistic of all values, per feature, averaged")
    _add_stats(report, "autocorrelation distance", r["acf"], "lower",
               "mean |difference| of the mean autocorrelation functions")
    if detect:
        _add_stats(report, "detection accuracy", r["detection"], "≈ 0.5",
                   "5-fold CV accuracy of gradient boosting telling real from synthetic "
                   "sequences" + ("; the folds are spans of the series' time, as its windows "
                                  "overlap" if c.starts is not None else ""))
    forecasts = [sequences.tstr_forecast(c.synthetic_x(k.synthetic), c.real_x(k.real),
                                         c.real_x(k.reference)) for k in comparisons]
    _add_stats(report, "TSTR one-step MSE",
               (_stat([f["mse_synthetic"] for f in forecasts]),
                _stat([f["mse_real"] for f in forecasts])), "lower",
               "ridge forecaster trained on synthetic, tested on real; the floor trains on real")
    def flat(x: np.ndarray) -> np.ndarray:  # as the families see them (bounds mapped too)
        return sequence.standardize(x, c.meta).reshape(len(x), -1)

    _series_privacy(report, c, flat, seed)
    real = c.real_x(c.reference_rows())
    report.add_figure("sequences, values and autocorrelation (blue real, orange synthetic)",
                      figures.sequences(real, c.synthetic.x))
    report.add_figure("standardized sequences, first two principal axes",
                      figures.embedding(flat(real), flat(c.synthetic.x), "sequences"))


def _series_privacy(report: Report, c: sets.Sets, rows: Callable[[Any], np.ndarray],
                    seed: int) -> None:
    """_privacy, for windows of one series against the held-out windows that share no value
    with a training window. A window overlapping training windows is all but one of its values
    seen in training: measured against it, a model that copies the series would read as
    private (its samples as close to held-out windows as to training ones). Left out, with a
    note, when fewer than membership.FEWEST held-out windows stand apart."""
    apart = windows_apart(c)
    if apart is None:  # records of their own, or a held-out part that is its own series
        return _privacy(report, c, rows, seed)
    held, fewest = len(c.holdout), membership.FEWEST
    if len(apart) < fewest:
        report.summary["notes"].append(
            f"privacy measures (DCR, copies, membership) left out: the records are overlapping "
            f"windows of one series, and {len(apart):,} of the {held:,} held-out windows share "
            f"no value with a training window (the measures need {fewest}); to measure them, "
            "evaluate a sample file against the series with a later span of it held out: "
            "plugkit eval SAMPLES --against SERIES --holdout SPAN (and --window T for a "
            "table's series)")
        return
    report.summary["notes"].append(
        f"privacy measures: against the {len(apart):,} of the {held:,} held-out windows that "
        "share no value with a training window (the others overlap training windows)")
    _privacy(report, dataclasses.replace(c, holdout=c.holdout.subset(apart), starts=None),
             rows, seed)


def windows_apart(c: sets.Sets) -> np.ndarray | None:
    """The held-out windows (indices into c.holdout) that overlap no training window: each
    starts at least a window's length from every training window's start. None when the
    records are not windows of one series split into both parts (Sets.starts)."""
    if c.starts is None or len(c.holdout) == 0:
        return None
    n_train, length = len(c.train), c.train.x.shape[1]
    train = np.sort(c.starts[:n_train])
    held = c.starts[n_train:]
    if len(train) == 0:
        return np.arange(len(held))
    at = np.searchsorted(train, held)
    before = held - train[np.clip(at - 1, 0, len(train) - 1)]
    after = train[np.clip(at, 0, len(train) - 1)] - held
    gap = np.minimum(np.abs(before), np.abs(after))
    return np.flatnonzero(gap >= length)


def _training_curves(run: Path, report: Report) -> None:
    path = run / rundir.METRICS
    if path.exists():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            report.add_figure("training losses per epoch", figures.loss_curves(rows))


MODALITIES = {"image": _images, "table": _tables, "text": _text, "sequence": _sequences}
