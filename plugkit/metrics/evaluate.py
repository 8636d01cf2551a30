"""`plugkit eval`: every measure of one modality, each next to its real-vs-real floor.

    report = evaluate("runs/vae-digits", out=Path("reports/vae-digits"))
    report = evaluate("synthetic.csv", against="adult", target="income")

A measure compares the synthetic set with the held-out real set; its floor is the same measure
between the training set and the held-out set, cut to the same size (plugkit.metrics.sets), so
"synthetic 4.1, floor 1.3" reads as "three times further from the real data than real data".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from plugkit import runs
from plugkit.errors import UsageError
from plugkit.metrics import detection, distances, figures, sequences, sets, tables, text
from plugkit.metrics.report import Report


def evaluate(source: str | Path, *, against: str | None = None, holdout: str | None = None,
             modality: str | None = None, n: int | None = None, seed: int = 0,
             target: str | None = None, out: Path | None = None,
             weights: str = "best") -> Report:
    path = Path(source)
    if (path / runs.RUN_JSON).exists():
        if against or holdout:
            raise UsageError("--against/--holdout are for sample files; a run is compared with "
                             "its own training data")
        compared = sets.from_run(path, n, seed, weights)
    else:
        compared = sets.from_file(str(source), against, holdout, modality, n, seed)
    report = Report(f"plugkit eval: {compared.source}", {
        "source": compared.source, "modality": compared.modality, "n": compared.n,
        "train_size": len(compared.train_full), "seed": seed,
        **({"weights": weights} if compared.run is not None else {})}, [])
    MODALITIES[compared.modality](compared, report, seed, target)
    if compared.run is not None:
        _training_curves(compared.run, report)
    if out is not None:
        report.write(Path(out))
    return report


def _add(report: Report, name: str, value: Any, floor: Any, better: str, help: str) -> None:
    report.measures.append({"name": name, "value": _num(value), "floor": _num(floor),
                            "better": better, "help": help})


def _num(value: Any) -> Any:
    return None if value is None else float(value)


def _compare(report: Report, name: str, fn: Any, s: dict, better: str, help: str) -> None:
    """fn(holdout, synthetic) against its floor fn(holdout, train): reference first."""
    _add(report, name, fn(s["holdout"], s["synthetic"]), fn(s["holdout"], s["train"]), better,
         help)


def _privacy(report: Report, s: dict, full_train: Any) -> None:
    """Distance to the closest training record, synthetic against fresh real data."""
    dcr = distances.privacy(s["synthetic"], full_train, s["holdout"])
    _add(report, "DCR ratio", dcr["dcr_ratio"], 1.0, "≈ 1 (0 = copies)",
         "median distance to the closest training record, over the holdout's")
    _add(report, "closer than holdout", dcr["closer_than_holdout"], 0.5, "≈ 0.5",
         "share of samples closer to the training data than the median held-out record")
    _add(report, "exact copies", distances.exact_copy_rate(s["synthetic"], full_train),
         distances.exact_copy_rate(s["holdout"], full_train), "lower",
         "share of samples identical to a training record")


def _images(c: sets.Sets, report: Report, seed: int, target: str | None) -> None:
    from plugkit.metrics import features

    net = features.feature_net(c.train_full.x, c.train_full.labels, seed=seed)
    f = {k: net.features(getattr(c, k).x) for k in ("synthetic", "train", "holdout")}
    _compare(report, "Fréchet distance", distances.frechet_distance, f, "lower",
             "between Gaussians fitted to classifier features")
    _compare(report, "KID", lambda a, b: distances.kid(a, b, seed=seed)["kid"], f, "lower",
             "kernel inception distance (unbiased MMD², cubic kernel) on the same features")
    prdc = {k: distances.prdc(f["holdout"], f[k]) for k in ("synthetic", "train")}
    for key in ("precision", "recall", "density", "coverage"):
        _add(report, key, prdc["synthetic"][key], prdc["train"][key], "higher",
             "k-NN manifold measure of Naeem et al. 2020 (k = 5)")
    _compare(report, "detection accuracy",
             lambda a, b: detection.detection(a, b, model="logistic", seed=seed)["accuracy"], f,
             "≈ 0.5", "5-fold CV accuracy of logistic regression telling real from synthetic")
    if c.synthetic.labels is not None and net.has_classes:
        _add(report, "label accuracy", (net.predict(c.synthetic.x) == c.synthetic.labels).mean(),
             (net.predict(c.holdout.x) == c.holdout.labels).mean(), "higher",
             "how often the classifier gives a sample the label it was generated for")
    report.details["feature_net_accuracy"] = net.accuracy
    pixels = {k: getattr(c, k).x.reshape(c.n, -1) for k in ("synthetic", "holdout")}
    _privacy(report, pixels, c.train_full.x.reshape(len(c.train_full), -1))
    report.add_figure("real and synthetic samples", figures.image_grids(c.holdout.x,
                                                                        c.synthetic.x))
    report.add_figure("classifier features, first two principal axes",
                      figures.embedding(f["holdout"], f["synthetic"], "features"))


def _tables(c: sets.Sets, report: Report, seed: int, target: str | None) -> None:
    from plugkit.data import tabular

    s = {k: getattr(c, k).x for k in ("synthetic", "train", "holdout")}
    fidelity = {k: tables.column_fidelity(s["holdout"], s[k]) for k in ("synthetic", "train")}
    for key, label in (("ks_mean", "KS mean (numeric columns)"),
                       ("tv_mean", "TV mean (categorical columns)")):
        _add(report, label, fidelity["synthetic"][key], fidelity["train"][key], "lower",
             "per-column distance between the marginal distributions, averaged")
    worst = {k: _worst_tv(fidelity[k]) for k in fidelity}
    _add(report, "TV max (categorical columns)", worst["synthetic"], worst["train"], "lower",
         "the largest per-column total variation")
    _compare(report, "association difference",
             lambda a, b: tables.association_difference(a, b)["mean_abs_diff"], s, "lower",
             "mean |difference| of the pairwise correlation / Cramér's V / correlation ratio")
    _compare(report, "detection AUC",
             lambda a, b: tables.table_detection(a, b, seed=seed)["auc"], s, "≈ 0.5",
             "5-fold CV ROC AUC of gradient boosting telling real from synthetic rows")
    target = target or c.meta.get("target")
    if target is not None:
        utility = tables.tstr(s["synthetic"], s["train"], s["holdout"], target, seed=seed)
        _add(report, f"TSTR {utility['metric']} ({target})", utility["synthetic"],
             utility["real"], "higher", "train on synthetic, test on real; the floor trains on "
             "real data of the same size")
    report.details["columns"] = fidelity["synthetic"]["columns"]
    encoding = c.meta["encoding"]
    rows = {k: tabular.encode(s[k], encoding) for k in ("synthetic", "holdout")}
    _privacy(report, rows, tabular.encode(c.train_full.x, encoding))
    columns = [col["name"] for col in encoding][:12]
    report.add_figure("per-column distributions (blue real, orange synthetic)",
                      figures.histograms(s["holdout"], s["synthetic"], columns,
                                         c.meta["columns"]))
    report.add_figure("encoded rows, first two principal axes",
                      figures.embedding(rows["holdout"], rows["synthetic"], "rows"))


def _worst_tv(fidelity: dict) -> float | None:
    tvs = [col["tv"] for col in fidelity["columns"].values() if "tv" in col]
    return max(tvs) if tvs else None


def _text(c: sets.Sets, report: Report, seed: int, target: str | None) -> None:
    s = {k: getattr(c, k).x for k in ("synthetic", "train", "holdout")}
    novelty = text.novelty(s["synthetic"], c.train_full.x, c.holdout_full.x)
    _add(report, "copies of training lines", novelty["copied"],
         distances.exact_copy_rate(s["holdout"], c.train_full.x), "lower",
         "share of samples that are a training line; the floor: held-out lines that are")
    _add(report, "new", novelty["new"], None, "higher",
         "share of samples in neither the training nor the held-out data")
    _add(report, "held-out only", novelty["holdout_only"], None, "",
         "share of samples that are a held-out line the model never saw")
    _add(report, "unique", novelty["unique"], len(set(s["holdout"])) / c.n, "≈ floor",
         "distinct samples over samples: low means mode collapse")
    _add(report, "distinct-2", text.distinct_n(s["synthetic"], 2),
         text.distinct_n(s["holdout"], 2), "≈ floor", "distinct character bigrams over all")
    _compare(report, "character distance", text.char_distance, s, "lower",
             "total variation between character frequencies")
    _compare(report, "length KS", lambda a, b: text.length_distance(a, b)["ks"], s, "lower",
             "KS statistic between line-length distributions")
    if c.run is not None:
        nll = _heldout_nll(c)
        if nll is not None:
            _add(report, "held-out NLL (nats/char)", nll, None, "lower",
                 "the model's negative log-likelihood per character, end of line included")
    report.details["samples"] = s["synthetic"][:20]
    report.add_figure("characters and line lengths (blue real, orange synthetic)",
                      figures.text_distributions(s["holdout"], s["synthetic"]))


def _heldout_nll(c: sets.Sets) -> float | None:
    """The family's own held-out loss, when the family says it is a likelihood."""
    from plugkit import sampling
    from plugkit.data import codec
    from plugkit.training import validate

    family = sampling.load(c.run)
    if not type(family).likelihood:
        return None
    x, y = codec.encode(c.holdout_full)
    return validate(family, x, y, 256, family.device)


def _sequences(c: sets.Sets, report: Report, seed: int, target: str | None) -> None:
    s = {k: getattr(c, k).x for k in ("synthetic", "train", "holdout")}
    _compare(report, "marginal KS", lambda a, b: sequences.marginal_distance(a, b)["ks_mean"],
             s, "lower", "KS statistic of all values, per feature, averaged")
    _compare(report, "autocorrelation distance",
             lambda a, b: sequences.autocorrelation_distance(a, b)["acf_distance"], s, "lower",
             "mean |difference| of the mean autocorrelation functions")
    _compare(report, "detection accuracy",
             lambda a, b: sequences.sequence_detection(a, b, seed=seed)["accuracy"], s, "≈ 0.5",
             "5-fold CV accuracy of gradient boosting telling real from synthetic sequences")
    forecast = sequences.tstr_forecast(s["synthetic"], s["train"], s["holdout"])
    _add(report, "TSTR one-step MSE", forecast["mse_synthetic"], forecast["mse_real"], "lower",
         "ridge forecaster trained on synthetic, tested on real; the floor trains on real")
    mean, std = np.asarray(c.meta["mean"]), np.asarray(c.meta["std"])
    flat = {k: ((s[k] - mean) / std).reshape(c.n, -1) for k in ("synthetic", "holdout")}
    train = ((c.train_full.x - mean) / std).reshape(len(c.train_full), -1)
    _privacy(report, flat, train)
    report.add_figure("sequences, values and autocorrelation (blue real, orange synthetic)",
                      figures.sequences(s["holdout"], s["synthetic"]))
    report.add_figure("standardized sequences, first two principal axes",
                      figures.embedding(flat["holdout"], flat["synthetic"], "sequences"))


def _training_curves(run: Path, report: Report) -> None:
    path = run / runs.METRICS
    if path.exists():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            report.add_figure("training losses per epoch", figures.loss_curves(rows))


MODALITIES = {"image": _images, "table": _tables, "text": _text, "sequence": _sequences}
