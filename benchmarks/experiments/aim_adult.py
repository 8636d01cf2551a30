# ruff: noqa
# The measurement behind docs/privacy.md, "Marginals instead of gradients (an experiment)":
# MST and AIM on Private-PGM (mbi 2.0.0, JAX) against adult, scored by plugkit eval. Not part
# of plugkit: a side venv runs it, one run at a time, one thread:
#   python3 -m venv /tmp/mbi-venv && /tmp/mbi-venv/bin/pip install mbi==2.0.0 jax==0.10.2 \
#       jaxlib==0.10.2 networkx opt_einsum pandas
#   export OMP_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
#   /tmp/mbi-venv/bin/python aim_adult.py --mech aim --eps 1 --seed 0 --out syn.csv
#   .venv/bin/python -m plugkit eval syn.csv --against adult --holdout adult-test --json --threads 1
# It reads adult from /tmp/mbi/adult-train.csv (plugkit.data.load("adult").x.to_csv(...)).

"""MST / AIM (McKenna et al. 2021, 2022) on adult with Private-PGM (`mbi` 2.0).

Experiment only. Usage:
  python experiment.py --mech mst --eps 1 --out syn-mst-1.csv
  python experiment.py --mech aim --eps 8 --out syn-aim-8.csv

Privacy: add/remove-one-record neighbours, zCDP accounting.
  rho = (sqrt(log(1/delta) + eps) - sqrt(log(1/delta)))^2    (cdp_rho as in MST/AIM reference code)
  Gaussian mechanism on a count vector (L2 sensitivity 1): rho = 1 / (2 sigma^2)
  exponential mechanism with eps_em, score sensitivity Delta: rho = eps_em^2 / 8 (bounded range)
The only things that read records: the noisy marginals and the exponential-mechanism draws.
The schema (column names, category lists from UCI adult.names, numeric bin edges) is public.
"""
import argparse
import itertools
import json
import math
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np
import pandas as pd
import networkx as nx
import opt_einsum

import mbi
from mbi import Dataset, Domain, LinearMeasurement
from mbi.estimation import MirrorDescent
from mbi import junction_tree

# ---------------------------------------------------------------- public schema
CATS = {  # UCI adult.names; NaN ("?" in the raw files) is its own category "<NA>"
    "workclass": ['Federal-gov', 'Local-gov', 'Never-worked', 'Private', 'Self-emp-inc',
                  'Self-emp-not-inc', 'State-gov', 'Without-pay', None],
    "education": ['10th', '11th', '12th', '1st-4th', '5th-6th', '7th-8th', '9th', 'Assoc-acdm',
                  'Assoc-voc', 'Bachelors', 'Doctorate', 'HS-grad', 'Masters', 'Preschool',
                  'Prof-school', 'Some-college'],
    "marital_status": ['Divorced', 'Married-AF-spouse', 'Married-civ-spouse',
                       'Married-spouse-absent', 'Never-married', 'Separated', 'Widowed'],
    "occupation": ['Adm-clerical', 'Armed-Forces', 'Craft-repair', 'Exec-managerial',
                   'Farming-fishing', 'Handlers-cleaners', 'Machine-op-inspct', 'Other-service',
                   'Priv-house-serv', 'Prof-specialty', 'Protective-serv', 'Sales',
                   'Tech-support', 'Transport-moving', None],
    "relationship": ['Husband', 'Not-in-family', 'Other-relative', 'Own-child', 'Unmarried', 'Wife'],
    "race": ['Amer-Indian-Eskimo', 'Asian-Pac-Islander', 'Black', 'Other', 'White'],
    "sex": ['Female', 'Male'],
    "native_country": ['Cambodia', 'Canada', 'China', 'Columbia', 'Cuba', 'Dominican-Republic',
                       'Ecuador', 'El-Salvador', 'England', 'France', 'Germany', 'Greece',
                       'Guatemala', 'Haiti', 'Holand-Netherlands', 'Honduras', 'Hong', 'Hungary',
                       'India', 'Iran', 'Ireland', 'Italy', 'Jamaica', 'Japan', 'Laos', 'Mexico',
                       'Nicaragua', 'Outlying-US(Guam-USVI-etc)', 'Peru', 'Philippines', 'Poland',
                       'Portugal', 'Puerto-Rico', 'Scotland', 'South', 'Taiwan', 'Thailand',
                       'Trinadad&Tobago', 'United-States', 'Vietnam', 'Yugoslavia', None],
    "income": ['<=50K', '>50K'],
}
# Numeric columns: bin k holds the integers lo_k..hi_k (inclusive); edges chosen by hand from
# the public description (ages 17-90, a 40-hour week, capital gains top-coded at 99999), not
# from the data. Values outside the grid are clipped into the end bins.
def _bins(edges):  # edges: sorted list of bin starts, last entry = max + 1
    return [(edges[i], edges[i + 1] - 1) for i in range(len(edges) - 1)]

NUM = {
    "age": _bins([17, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 91]),
    "fnlwgt": _bins([0, 50_000, 75_000, 100_000, 125_000, 150_000, 175_000, 200_000, 225_000,
                     250_000, 275_000, 300_000, 350_000, 400_000, 500_000, 750_000, 1_500_001]),
    "education_num": [(v, v) for v in range(1, 17)],
    "capital_gain": _bins([0, 1, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 7500, 8000, 10000,
                           15000, 20000, 30000, 50000, 99999, 100000]),
    "capital_loss": _bins([0, 1, 1000, 1400, 1600, 1700, 1800, 1900, 2000, 2100, 2200, 2400,
                           2600, 3000, 4400]),
    "hours_per_week": _bins([1, 10, 20, 25, 30, 35, 40, 41, 45, 46, 50, 51, 55, 60, 61, 70, 80, 100]),
}
COLS = ['age', 'workclass', 'fnlwgt', 'education', 'education_num', 'marital_status',
        'occupation', 'relationship', 'race', 'sex', 'capital_gain', 'capital_loss',
        'hours_per_week', 'native_country', 'income']


def encode(df):
    data = {}
    for c in COLS:
        if c in CATS:
            lut = {v: i for i, v in enumerate(CATS[c]) if v is not None}
            na = CATS[c].index(None) if None in CATS[c] else None
            codes = df[c].map(lut)
            if na is not None:
                codes = codes.fillna(na)
            assert not codes.isna().any(), c
            data[c] = codes.astype(int).to_numpy()
        else:
            starts = np.array([lo for lo, _ in NUM[c]])
            v = df[c].to_numpy()
            data[c] = np.clip(np.searchsorted(starts, v, side="right") - 1, 0, len(starts) - 1)
    dom = Domain(COLS, [len(CATS[c]) if c in CATS else len(NUM[c]) for c in COLS])
    return Dataset(data, dom)


def decode(data, rng):
    out = {}
    for c in COLS:
        codes = np.asarray(data[c])
        if c in CATS:
            out[c] = pd.Series([CATS[c][k] for k in codes], dtype=object)
        else:
            lo = np.array([a for a, _ in NUM[c]])[codes]
            hi = np.array([b for _, b in NUM[c]])[codes]
            out[c] = pd.Series(rng.integers(lo, hi + 1), dtype="int64")
    return pd.DataFrame(out)[COLS]


# ---------------------------------------------------------------- privacy primitives
def cdp_rho(eps, delta):
    return (math.sqrt(math.log(1 / delta) + eps) - math.sqrt(math.log(1 / delta))) ** 2


def gaussian(x, sigma, rng):
    return x + rng.normal(0, sigma, size=x.shape)


def exp_mech(scores, eps, sensitivity, rng):
    """Exponential mechanism via Gumbel-max: P(i) ~ exp(eps * q_i / (2 Delta))."""
    s = np.asarray(scores, dtype=float)
    g = rng.gumbel(size=s.size)
    return int(np.argmax(eps * (s - s.max()) / (2 * sensitivity) + g))


class Ledger:
    def __init__(self, rho):
        self.rho, self.used, self.items = rho, 0.0, []

    def spend(self, r, what):
        self.used += r
        self.items.append((what, r))
        assert self.used <= self.rho * (1 + 1e-9), (self.used, self.rho)


def np_marginals(model, queries):
    """Exact marginals of the fitted model for any cliques, by einsum over exp(potentials)
    in numpy (mbi's eager variable_elimination costs ~1 s a query on this machine)."""
    dom = model.domain
    letters = {a: chr(ord('a') + i) for i, a in enumerate(dom.attributes)}
    ops, subs = [], []
    for cl, f in model.potentials.tables.items():
        v = np.asarray(f.values, dtype=np.float64)
        ops.append(np.exp(v - v.max()))
        subs.append(''.join(letters[a] for a in f.domain.attributes))
    for a in dom.attributes:  # make sure every attribute appears (uncovered ones: uniform)
        if not any(letters[a] in s for s in subs):
            ops.append(np.ones(dom[a])); subs.append(letters[a])
    total = float(model.total)
    out = {}
    known = {tuple(f.domain.attributes): np.asarray(f.values, dtype=np.float64)
             for f in model.marginals.tables.values()}
    for q in queries:
        cover = next((cl for cl in known if set(q) <= set(cl)), None)
        if cover is not None:  # the model's own (consistent) marginals: sum out the rest
            m = known[cover]
            m = m.sum(axis=tuple(i for i, a in enumerate(cover) if a not in q))
            keep = [a for a in cover if a in q]
            m = np.transpose(m, [keep.index(a) for a in q])
            out[tuple(q)] = (m * (total / m.sum())).ravel()
            continue
        o = ''.join(letters[a] for a in q)
        # opt_einsum's dynamic-programming path: numpy's greedy path blew up to GBs and
        # minutes on the 20+-clique models of AIM at eps = 8
        m = opt_einsum.contract(','.join(subs) + '->' + o, *ops, optimize='dp')
        out[tuple(q)] = (m * (total / m.sum())).ravel()
    return out


def estimate(dom, meas, iters, warm=None):
    return MirrorDescent().estimate(dom, meas, iters=iters, warm_start=warm)


# ---------------------------------------------------------------- MST
def mst(ds, rho, rng, iters, log):
    """MST: rho/3 for the noisy 1-way marginals, rho/3 for the tree (exp. mechanism on L1
    errors of the independent model), rho/3 for the tree's noisy 2-way marginals."""
    L = Ledger(rho)
    dom = ds.domain
    d = len(dom)
    # 1-way: d Gaussian measurements, each rho/(3d)
    s1 = math.sqrt(d / (2 * rho / 3))
    meas = []
    for c in dom.attributes:
        x = np.asarray(ds.project([c]).datavector())
        meas.append(LinearMeasurement(gaussian(x, s1, rng), (c,), stddev=s1))
        L.spend(1 / (2 * s1 ** 2), f"1-way {c}")
    log(f"1-way sigma {s1:.1f}")
    # selection: independent model from the noisy 1-ways (post-processing), then Kruskal + EM
    model1 = estimate(dom, meas, iters=200)
    pairs = list(itertools.combinations(dom.attributes, 2))
    err = {}
    est = np_marginals(model1, pairs)
    for a, b in pairs:
        x = np.asarray(ds.project([a, b]).datavector())
        err[(a, b)] = np.abs(x - est[(a, b)]).sum()  # add/remove one record changes it by <= 1
    eps_em = math.sqrt(8 * (rho / 3) / (d - 1))
    G = nx.Graph(); G.add_nodes_from(dom.attributes)
    uf = {c: c for c in dom.attributes}

    def find(c):
        while uf[c] != c:
            c = uf[c]
        return c
    edges = []
    for _ in range(d - 1):
        cand = [e for e in pairs if find(e[0]) != find(e[1])]
        i = exp_mech([err[e] for e in cand], eps_em, 1.0, rng)
        e = cand[i]
        L.spend(eps_em ** 2 / 8, f"EM pick {e}")
        uf[find(e[0])] = find(e[1])
        edges.append(e)
    log("tree: " + ", ".join(f"{a}-{b}" for a, b in edges))
    s2 = math.sqrt((d - 1) / (2 * rho / 3))
    for e in edges:
        x = np.asarray(ds.project(list(e)).datavector())
        meas.append(LinearMeasurement(gaussian(x, s2, rng), e, stddev=s2))
        L.spend(1 / (2 * s2 ** 2), f"2-way {e}")
    log(f"2-way sigma {s2:.1f}")
    model = estimate(dom, meas, iters=iters)
    return model, L, {"sigma_1way": s1, "sigma_2way": s2, "eps_em": eps_em,
                      "tree": [list(e) for e in edges]}


# ---------------------------------------------------------------- AIM
def aim(ds, rho, rng, iters, log, workload, max_model_mb=80.0, rounds=None, max_seconds=480,
        inner_iters=100):
    """AIM (McKenna et al. 2022), following the reference implementation: 0.9 of each round's
    budget to the Gaussian measurement, 0.1 to the EM selection; T = 16 d planned rounds; the
    noise is halved (budget annealing) when a measurement barely moves the model; the last
    round uses what is left. Candidates: the downward closure of the workload, scored by
    w_r * (||M_r(D) - M_r(model)||_1 - sqrt(2/pi) sigma n_r), sensitivity w_r."""
    t0 = time.time()
    L = Ledger(rho)
    dom = ds.domain
    d = len(dom)
    T = rounds or 16 * d
    # candidate weights w_r = sum over workload cliques q of |r ∩ q|
    closure = set()
    for q in workload:
        for k in range(1, len(q) + 1):
            closure.update(itertools.combinations(q, k))
    cands = {r: sum(len(set(r) & set(q)) for q in workload) for r in closure}
    answers = {r: np.asarray(ds.project(list(r)).datavector()) for r in cands}
    sigma = math.sqrt(T / (2 * 0.9 * rho))
    eps = math.sqrt(8 * 0.1 * rho / T)
    meas = []
    for c in dom.attributes:
        x = answers[(c,)]
        meas.append(LinearMeasurement(gaussian(x, sigma, rng), (c,), stddev=sigma))
        L.spend(1 / (2 * sigma ** 2), f"1-way {c}")
    model = estimate(dom, meas, iters=inner_iters)
    terminate, t, picks = False, 0, []
    while not terminate:
        t += 1
        left = rho - L.used
        if left < 2 * (1 / (2 * sigma ** 2) + eps ** 2 / 8) or time.time() - t0 > max_seconds:
            # spend the rest in one last round (also when out of time: fewer, larger rounds
            # are still private; the budget is the same)
            sigma = math.sqrt(1 / (2 * 0.9 * left))
            eps = math.sqrt(8 * 0.1 * left)
            terminate = True
        ts = time.time()
        size_limit = max_model_mb * (L.used + 1 / (2 * sigma ** 2) + eps ** 2 / 8) / rho
        cur = [tuple(cl) for cl in model.cliques]
        small = [r for r in cands
                 if r in cur or junction_tree.hypothetical_model_size(dom, cur + [r]) <= size_limit]
        scores, wmax = [], 0.0
        margs = np_marginals(model, small)
        for r in small:
            n = dom.size(r)
            xh = margs[r]
            scores.append(cands[r] * (np.abs(answers[r] - xh).sum() - math.sqrt(2 / math.pi) * sigma * n))
            wmax = max(wmax, cands[r])
        r = small[exp_mech(scores, eps, wmax, rng)]
        te0 = time.time()
        L.spend(eps ** 2 / 8, f"EM round {t}")
        y = gaussian(answers[r], sigma, rng)
        meas.append(LinearMeasurement(y, r, stddev=sigma))
        L.spend(1 / (2 * sigma ** 2), f"measure {r}")
        picks.append((list(r), sigma))
        z = margs[r]
        te = time.time()
        model = estimate(dom, meas, iters=inner_iters, warm=model)
        te = time.time() - te
        w = np_marginals(model, [r])[r]
        n = dom.size(r)
        log(f"round {t}: {r} sigma {sigma:.1f} rho used {L.used / rho:.3f} "
            f"({time.time() - t0:.0f}s; select {te0 - ts:.1f}s, estimate {te:.1f}s; "
            f"model {junction_tree.hypothetical_model_size(dom, [tuple(c) for c in model.cliques]):.2f} MB)")
        if np.abs(w - z).sum() <= sigma * math.sqrt(2 / math.pi) * n and not terminate:
            sigma /= 2
            eps *= 2
    model = estimate(dom, meas, iters=iters, warm=model)
    return model, L, {"rounds": t, "picks": picks, "planned_T": T}


# ---------------------------------------------------------------- main
def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mech", choices=["mst", "aim"], default="mst")
    p.add_argument("--eps", type=float, default=1.0)
    p.add_argument("--delta", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--rows", type=int, default=10000)
    p.add_argument("--workload", default="pairs+income3")
    p.add_argument("--aim-seconds", type=float, default=420)
    p.add_argument("--inner-iters", type=int, default=100)
    p.add_argument("--max-model-mb", type=float, default=80.0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    t0, c0 = time.time(), time.process_time()
    log = lambda m: print(f"[{time.time() - t0:6.1f}s] {m}", flush=True)
    df = pd.read_csv("/tmp/mbi/adult-train.csv")
    n = len(df)
    delta = a.delta if a.delta is not None else min(1e-5, 1 / (10 * n))
    rho = cdp_rho(a.eps, delta)
    log(f"n={n} eps={a.eps} delta={delta:.3g} rho={rho:.5f}")
    ds = encode(df)
    log(f"domain {ds.domain}")
    rng = np.random.default_rng(a.seed)
    np.random.seed(a.seed)  # mbi's synthetic_data draws from numpy's global generator
    if a.mech == "mst":
        model, L, info = mst(ds, rho, rng, a.iters, log)
    else:
        attrs = ds.domain.attributes
        wl = list(itertools.combinations(attrs, 2))
        if a.workload == "pairs+income3":
            wl += [tuple(sorted(q, key=attrs.index)) for q in itertools.combinations(
                [c for c in attrs if c != "income"], 2)]
            wl = list(itertools.combinations(attrs, 2)) + [
                tuple(sorted(q + ("income",), key=attrs.index))
                for q in itertools.combinations([c for c in attrs if c != "income"], 2)]
        elif a.workload == "all3":
            wl = list(itertools.combinations(attrs, 3))
        model, L, info = aim(ds, rho, rng, a.iters, log, wl, max_seconds=a.aim_seconds, max_model_mb=a.max_model_mb,
                             inner_iters=a.inner_iters)
    log(f"model cliques {len(model.cliques)}; rho spent {L.used:.5f} of {rho:.5f}")
    syn = model.synthetic_data(rows=a.rows)
    out = decode(syn.to_dict(), rng)
    out.to_csv(a.out, index=False)
    wall, cpu = time.time() - t0, time.process_time() - c0
    log(f"wrote {a.out}: {len(out)} rows; wall {wall:.0f}s cpu {cpu:.0f}s")
    json.dump({"mech": a.mech, "eps": a.eps, "delta": delta, "rho": rho, "rho_spent": L.used,
               "wall_s": wall, "cpu_s": cpu, "seed": a.seed, "iters": a.iters,
               "info": info, "max_model_mb": a.max_model_mb if a.mech == "aim" else None, "workload": a.workload if a.mech == "aim" else None},
              open(a.out + ".json", "w"), indent=1, default=str)


if __name__ == "__main__":
    main()
