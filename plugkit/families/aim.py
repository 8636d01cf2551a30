"""aim: synthetic tables from noisy marginals, the field's strongest private table method.

AIM (McKenna et al., VLDB 2022; plugkit.marginals.aim) measures marginals of the table's
columns with Gaussian noise, choosing each next one by the exponential mechanism where its
model is most wrong, and fits a graphical model to all of them (Private-PGM, McKenna et al.,
ICML 2019; plugkit.marginals.model); samples are drawn from that model. Under --dp-epsilon it
spends the budget itself (Family.private_mechanism): the records are read only by the
mechanism's measurements and selections, each recorded in the run's accountant. Without it,
the marginals are measured exactly (a strong non-private model of the same kind).
`plugkit sample --where COLUMN=VALUE` samples the model's conditional given that category.

One epoch is one round of AIM on the whole table; the run ends when the mechanism is done
(its budget spent, or, without one, when every marginal of the workload fits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from plugkit.errors import PlugkitError
from plugkit.families.tabular_heads import Settings
from plugkit.family import Batch, DataInfo, Family
from plugkit.formats import tabular
from plugkit.marginals.aim import AIM
from plugkit.marginals.attributes import Attributes
from plugkit.marginals.model import GraphicalModel, Measurement
from plugkit.options import option


@dataclass
class Options:
    workload: int = option(2, "the marginals to get right: every one of this many columns",
                           min=1, max=3)
    offset_bins: int = option(4, "levels per Gaussian mode of a numeric column (its shape's "
                              "detail; a point mode is one level)", min=1, max=16)
    # 20, not AIM's 80: a fit's time grows with the model, and on adult at epsilon 8 a model
    # of 80 MB took minutes a round on this CPU
    max_mb: float = option(20.0, "the largest model, in MB of cells (AIM's size limit)",
                           min=0.1)
    # 300, not the reference's 100: AIM halves its noise when a measurement barely moves the
    # model, so a fit that has not absorbed the measurement spends the budget too fast (on
    # adult at epsilon 8, 100 iterations ended AIM after 21 rounds with TSTR 0.832)
    iters: int = option(300, "mirror-descent iterations after each measurement", min=1)
    final_iters: int = option(2000, "mirror-descent iterations of the last fit", min=1)


class Fitted(torch.nn.Module):
    """The mechanism's state as tensors, for checkpoints: its number of measurements and their
    shapes are what training found, so loading rebuilds them (`shape_from`)."""

    def __init__(self, aim: AIM) -> None:
        super().__init__()
        self.aim = aim

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        aim = self.aim
        out = {"sigma": torch.tensor(aim.sigma, dtype=torch.float64),
               "epsilon": torch.tensor(aim.epsilon, dtype=torch.float64),
               "rounds": torch.tensor(aim.rounds), "done": torch.tensor(int(aim.done))}
        for i, m in enumerate(aim.measurements):
            out[f"measured.{i}.clique"] = torch.tensor(m.clique, dtype=torch.int64)
            out[f"measured.{i}.values"] = m.values.detach().cpu().contiguous()
            out[f"measured.{i}.noise"] = torch.tensor(m.noise, dtype=torch.float64)
        if aim.model is not None:
            out |= {f"model.{k}": v for k, v in aim.model.state().items()}
        return out

    def shape_from(self, tensors: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(tensors)

    def load_state_dict(self, state: dict, strict: bool = True, assign: bool = False):
        aim = self.aim
        aim.sigma, aim.epsilon = float(state["sigma"]), float(state["epsilon"])
        aim.rounds, aim.done = int(state["rounds"]), bool(state["done"])
        count = sum(k.endswith(".clique") and k.startswith("measured.") for k in state)
        aim.measurements = [Measurement(tuple(state[f"measured.{i}.clique"].tolist()),
                                        state[f"measured.{i}.values"],
                                        float(state[f"measured.{i}.noise"]))
                            for i in range(count)]
        model = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        sizes = {a: n for m in aim.measurements for a, n in zip(m.clique, m.values.shape,
                                                                 strict=True)}
        if any(aim.sizes[a] != n for a, n in sizes.items()):
            raise PlugkitError("these weights were fitted to other levels of the columns (an "
                               "earlier aim, or other options): train the run again")
        aim.model = GraphicalModel.from_state(aim.sizes, model) if model else None
        return torch.nn.modules.module._IncompatibleKeys([], [])


class Aim(Family):
    name = "aim"
    description = "private synthetic tables from noisy marginals (AIM on a graphical model)"
    modalities = ("table",)
    conditional = True  # --where: the model's own conditional, by evidence (no rejection)
    private = ("table",)
    private_mechanism = True
    whole_batch = True
    # its held-out likelihood can fall as pairs are fitted to a small table's noise, but
    # the last model holds the relations: it is the one sampled, and no early stop
    val_loss_ranks_models = False
    default_epochs = 1000  # rounds at most: the mechanism ends the run when it is done
    Options = Options
    Settings = Settings
    default_dataset = "adult"

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        self.attributes = Attributes(info.meta["encoding"], options.offset_bins)
        self.fitted = Fitted(AIM(self.attributes.sizes, options.workload, options.max_mb,
                                 options.iters, options.final_iters))
        self._cache: tuple | None = None  # (model, where, the conditioned model)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"aim": self.fitted}

    def optimizers(self) -> dict:
        return {}

    def train_step(self, batch: Batch) -> dict[str, float]:
        if self.fitted.aim.done:
            return {}
        return self.fitted.aim.step(self.attributes.codes(batch.x), self.ledger)

    def finished(self) -> bool:
        return self.fitted.aim.done

    def val_loss(self, batch: Batch) -> float:
        """The held-out rows' negative log-likelihood under the model, per row, of their
        levels (not of the numeric values within a level)."""
        codes = self.attributes.codes(batch.x)
        model = self.fitted.aim.model
        if model is None:  # before the first round: every level equally likely
            return float(sum(torch.tensor(self.attributes.sizes, dtype=torch.float64).log()))
        return float(-model.log_prob(codes).mean())

    def sample(self, n, *, generator, labels=None, settings=None) -> torch.Tensor:
        model = self.fitted.aim.model
        where = settings.where if settings is not None else ""
        if model is None:  # before the first round: every level equally likely
            codes = torch.stack([torch.randint(s, (n,), generator=generator,
                                               device=generator.device)
                                 for s in self.attributes.sizes], 1)
        else:
            codes = self._conditioned(where).sample(n, generator)
        if where and model is None:
            codes[:, self._evidence(where)[0]] = self._evidence(where)[1]
        return self.attributes.rows(codes, generator).to(self.device)

    def _conditioned(self, where: str) -> GraphicalModel:
        """The model to sample: given `where`'s category, and, under DP, given "present" for
        a numeric column whose noisy count of missing values read as none (the noise on the
        measured missing level would otherwise leave a few NaNs in a column that has none);
        kept while the model stays the same, since sample() is called in blocks."""
        model = self.fitted.aim.model
        if self._cache is not None and self._cache[0] is model and self._cache[1] == where:
            return self._cache[2]
        conditioned = model
        for i, column in enumerate(self.info.meta["encoding"]):
            if column.get("private", {}).get("missing_share", 1.0) == 0.0:
                conditioned = conditioned.given(i, list(range(self.attributes.sizes[i] - 1)))
        if where:
            conditioned = conditioned.given(*self._evidence(where))
        self._cache = (model, where, conditioned)
        return conditioned

    def _evidence(self, where: str) -> tuple[int, int]:
        """`column=value` as (attribute, level): a categorical column's level is its
        category's index."""
        encoding = self.info.meta["encoding"]
        name, index = tabular.parse_where(encoding, where)
        return [c["name"] for c in encoding].index(name), index
