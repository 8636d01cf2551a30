"""The example plugin through plugkit's shared conformance suite, as any third party would."""

import numpy as np
import pandas as pd
from plugkit_copula import Copula

from plugkit import data
from plugkit.family import Batch, DataInfo
from plugkit.formats import codec, tabular
from plugkit.testing import FamilyTests

# the recipe's table, but with something to learn: the city follows the age (a copula's loss on
# columns that are nearly independent stays at 0 and the suite cannot see it go down)
df = pd.DataFrame({"age": [23, 35, 51, 44, 29, 62] * 5,
                   "city": ["Lima", "Oslo", "Rome", "Oslo", "Lima", "Rome"] * 5})
ds = data.load(df)  # validated; fits the encoding into ds.meta


class TestCopula(FamilyTests):
    family = Copula
    info = DataInfo("table", ds.meta)

    def batch(self):
        return Batch(codec.encode(ds)[0])


gaps = data.load(pd.DataFrame({"income": [1.5, np.nan, 3.0, 4.5, np.nan, 2.0] * 10,
                               "pet": ["dog", "cat", None, None, "cat", "dog"] * 10}))


class TestCopulaWithGaps(FamilyTests):
    family = Copula
    info = DataInfo("table", gaps.meta)

    def batch(self):
        return Batch(codec.encode(gaps)[0])

    def test_marginals_keep_the_missing_share(self):
        family = self.build()
        for _ in range(5):
            family.train_step(self.batch())
        drawn = tabular.values(self.draw(family, 4000), self.info.meta["encoding"]).numpy()
        assert abs(np.isnan(drawn[:, 0]).mean() - 1 / 3) < 0.05  # income: 2 of 6 missing
        assert abs((drawn[:, 1] == 2).mean() - 1 / 3) < 0.05  # pet: None is category 2
