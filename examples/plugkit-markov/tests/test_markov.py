"""The example plugin through plugkit's shared conformance suite, as any third party would."""

import torch
from plugkit_markov import Markov

from plugkit.family import Batch, DataInfo
from plugkit.formats import text
from plugkit.testing import FamilyTests

VOCAB = list("abc")


class TestMarkov(FamilyTests):
    family = Markov
    info = DataInfo("text", {"vocab": VOCAB, "max_length": 4})
    options = ["order=2", "lr=0.1"]

    def batch(self):
        return Batch(torch.from_numpy(text.encode(["abc", "ab", "cab", "a"], VOCAB)))
