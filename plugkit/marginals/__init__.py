"""Graphical models fitted to noisy marginals (the inference core of Private-PGM and AIM).

`plugkit.marginals.model` holds a discrete Markov random field on a junction tree, estimated
from noisy marginal counts by entropic mirror descent (McKenna, Sheldon and Miklau, ICML 2019),
the estimator AIM (McKenna et al., VLDB 2022) re-runs after each new measurement. It is plain
torch in float64 on the CPU: belief propagation in log space, marginals of any clique, exact
ancestral sampling from a `torch.Generator`, log-likelihoods, and a state made of tensors only,
so a fitted model can go into safetensors. It reads no records itself: privacy comes from the
noisy measurements a caller gives it; everything here is post-processing.
"""

from plugkit.marginals.model import GraphicalModel, Measurement, junction_tree, model_size_mb

__all__ = ["GraphicalModel", "Measurement", "junction_tree", "model_size_mb"]
