"""Measurement math for `plugkit eval`: how close synthetic samples are to real data.

Pure functions on arrays, DataFrames and lists of strings; every result is a float or a dict of
floats, ready for JSON. One module per job:

    distances   feature-space distances: Fréchet, KID, PRDC, nearest-record privacy
    detection   classifier two-sample test (can a classifier tell real from synthetic?)
    tables      per-column fidelity, associations, detection and TSTR for DataFrames
    text        novelty, distinct-n, character and length distributions for strings
    sequences   marginals, autocorrelation, detection and forecasting TSTR for [N, T, F]
    diversity   within-class diversity of labelled samples: per class, as varied as real?
    membership  membership inference attacks on the samples: distance and density (DOMIAS)
    baseline    the real-vs-real floor every distance is reported next to
    features    the image feature network, trained on the real data (no downloads)
    sets        what is compared: synthetic, train and held-out sets of one size
    evaluate    every measure of a modality; report and figures: what eval writes
    univariate, associations   building blocks: KS, total variation, Cramér's V, eta

docs/metrics.md gives each formula, its range and what good looks like.
"""
