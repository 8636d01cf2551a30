# ruff: noqa
# Cross-check of plugkit.marginals (torch) against Private-PGM's reference code (mbi 2.0.0, JAX)
# on adult, discretized as aim_adult.py does. Not part of plugkit; two venvs, one thread each:
#   export OMP_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
#   /tmp/mbi-venv/bin/python pgm_vs_mbi.py mbi --config pairs15 --iters 1000   # measures + fits
#   PYTHONPATH=. .venv/bin/python pgm_vs_mbi.py torch --config pairs15 --iters 1000  # fits, compares
# The mbi side draws the noisy measurements (seeded) and writes them with its fit to
# /tmp/mbi/pgm-<config>.npz; the torch side reads them, fits the same measurements for the
# same iterations, and prints the agreement (max |difference| of the measured marginals over
# the total), both losses (1/2 sum ||(mu - y)/sigma||^2, mbi's convention) and seconds/iteration.
# Configs: pairs15 (1-ways + 15 random pairs, sigma 10); big (1-ways + random pairs and triples
# while mbi's hypothetical model size stays <= 80 MB, up to 40 cliques, sigma 10).
# Measured (AMD EPYC, one thread each): pairs15, 5000 iters: max |mu diff| / total 2.3e-6, loss
# 580.97 (ours) vs 580.90 (mbi), 1.68 vs 0.54 ms/iter; big (76 MB, 8 tree cliques), 200 iters:
# 4.5e-14, loss 1.76013e6 both, 149 vs 476 ms/iter.
import argparse
import itertools
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def path(config):
    return f"/tmp/mbi/pgm-{config}.npz"


def loss(fits, ys, sigmas):
    return sum(0.5 * float(np.sum(((f - y) / s) ** 2)) for f, y, s in zip(fits, ys, sigmas))


def side_mbi(a):
    sys.path.insert(0, HERE)
    import pandas as pd
    import aim_adult  # jax x64 on, the adult schema, encode()
    from mbi import LinearMeasurement, junction_tree
    from mbi.estimation import MirrorDescent

    ds = aim_adult.encode(pd.read_csv("/tmp/mbi/adult-train.csv"))
    dom = ds.domain
    attrs = list(dom.attributes)
    rng = np.random.default_rng(a.seed)
    cliques = [(c,) for c in attrs]
    if a.config == "pairs15":
        pairs = list(itertools.combinations(attrs, 2))
        cliques += [pairs[i] for i in rng.choice(len(pairs), 15, replace=False)]
    else:
        cands = list(itertools.combinations(attrs, 2)) + list(itertools.combinations(attrs, 3))
        for i in rng.permutation(len(cands)):
            if len(cliques) >= len(attrs) + 40:
                break
            trial = cliques + [cands[i]]
            if junction_tree.hypothetical_model_size(dom, trial) <= 80:
                cliques = trial
        print("model MB (mbi)", junction_tree.hypothetical_model_size(dom, cliques))
    sigma = 10.0
    meas, ys = [], []
    for c in cliques:
        y = np.asarray(ds.project(list(c)).datavector()) + rng.normal(0, sigma, dom.size(c))
        meas.append(LinearMeasurement(y, c, stddev=sigma))
        ys.append(y)
    est = MirrorDescent()
    t0 = time.time()
    est.estimate(dom, meas, iters=50)  # JIT compilation, kept out of the timing
    t1 = time.time()
    model = est.estimate(dom, meas, iters=a.iters)
    fits = [np.asarray(model.project(list(c)).datavector()) for c in cliques]  # waits for JAX
    t2 = time.time()
    out = {"sizes": np.array([dom[c] for c in attrs]), "iters": np.array(a.iters),
           "mbi_total": np.array(float(model.total)),
           "mbi_s_per_iter": np.array((t2 - t1) / a.iters), "mbi_first_call_s": np.array(t1 - t0),
           "mbi_model_mb": np.array(junction_tree.hypothetical_model_size(dom, cliques)),
           "mbi_tree": np.array(json.dumps([[attrs.index(x) for x in cl] for cl in
                                            junction_tree.maximal_cliques(
                                                junction_tree.make_junction_tree(dom, cliques)[0])]))}
    for k, c in enumerate(cliques):
        out[f"clique_{k}"] = np.array([attrs.index(x) for x in c])
        out[f"y_{k}"] = ys[k]
        out[f"fit_{k}"] = fits[k]
    np.savez(path(a.config), **out)
    print(f"mbi: {a.iters} iters {t2 - t1:.1f}s ({(t2 - t1) / a.iters * 1e3:.2f} ms/iter; first "
          f"call with compile {t1 - t0:.1f}s), loss {loss(fits, ys, [sigma] * len(ys)):.6g}, "
          f"factors {len(model.cliques)}")


def side_torch(a):
    import torch

    from plugkit.marginals.model import GraphicalModel, Measurement, model_size_mb

    z = np.load(path(a.config), allow_pickle=False)
    sizes = tuple(int(s) for s in z["sizes"])
    n = sum(1 for k in z.files if k.startswith("clique_"))
    cliques = [tuple(int(x) for x in z[f"clique_{k}"]) for k in range(n)]
    meas = []
    for k, c in enumerate(cliques):
        order = sorted(range(len(c)), key=lambda i: c[i])  # our cliques are sorted
        y = torch.from_numpy(z[f"y_{k}"]).reshape([sizes[x] for x in c]).permute(order)
        meas.append(Measurement(tuple(sorted(c)), y.contiguous(), 10.0))
    iters = int(z["iters"])
    t0 = time.time()
    model = GraphicalModel.estimate(sizes, meas, iters=iters)
    dt = time.time() - t0
    fits = [model.marginal(c).reshape(-1).numpy() for c in cliques]  # axes in mbi's order
    ys = [z[f"y_{k}"] for k in range(n)]
    ref = [z[f"fit_{k}"] for k in range(n)]
    total = model.total
    agree = max(float(np.max(np.abs(f - r))) for f, r in zip(fits, ref)) / total
    mbi_tree = json.loads(str(z["mbi_tree"]))
    print(f"config {a.config}: {len(cliques)} measurements, {len(model.cliques)} tree cliques "
          f"(mbi {len(mbi_tree)}), model {model_size_mb(sizes, cliques):.2f} MB "
          f"(mbi {float(z['mbi_model_mb']):.2f} MB)")
    print(f"total: ours {total:.3f}, mbi {float(z['mbi_total']):.3f}")
    print(f"max |mu_ours - mu_mbi| / total over measured cliques: {agree:.3g}")
    print(f"loss: ours {loss(fits, ys, [10.0] * n):.6g}, mbi {loss(ref, ys, [10.0] * n):.6g}")
    print(f"s/iter: ours {dt / iters * 1e3:.2f} ms, mbi {float(z['mbi_s_per_iter']) * 1e3:.2f} ms "
          f"({iters} iters, one thread each)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("side", choices=["mbi", "torch"])
    p.add_argument("--config", choices=["pairs15", "big"], default="pairs15")
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    side_mbi(a) if a.side == "mbi" else side_torch(a)


if __name__ == "__main__":
    main()
