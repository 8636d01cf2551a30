"""The conformance suite every family's tests reuse, built-in or third-party.

    from plugkit.testing import FamilyTests

    class TestMarkov(FamilyTests):
        family = Markov
        info = DataInfo("text", {"vocab": list("abc")})
        options = ["order=2"]

        def batch(self):
            return Batch(torch.tensor([[1, 2, 3, 0]]))

pytest collects the subclass and runs: build, a few steps lower the loss on a fixed batch,
sample shape/dtype, checkpoint round trip, determinism under a seed, and that the
`conditional` and `private` flags `plugkit list` shows tell the truth. A test that does not
apply to a family (say, a single decreasing loss for an adversarial one) is skipped with the
reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest
import torch

from plugkit import checkpoint, options
from plugkit.errors import UsageError
from plugkit.family import Batch, DataInfo, Family, contract_errors
from plugkit.formats import codec, tabular


class FamilyTests:
    family: ClassVar[type[Family]]
    info: ClassVar[DataInfo]
    options: ClassVar[list[str]] = []  # key=value pairs, as given with -o
    loss_key: ClassVar[str | None] = "loss"  # None: no single loss must go down (e.g. a GAN)
    steps: ClassVar[int] = 20  # training steps on the fixed batch

    def batch(self) -> Batch:
        """A small fixed batch of the family's data."""
        raise NotImplementedError

    def build(self, seed: int = 0, info: DataInfo | None = None) -> Family:
        torch.manual_seed(seed)
        info = info or self.info
        pairs = options.with_defaults(self.family.modality_options.get(info.modality, {}),
                                      list(self.options))
        if info.private:  # the option values a private run takes (Family.private_options)
            from plugkit import privacy

            pairs = privacy.with_defaults(self.family, pairs)
        opts = options.parse(self.family.Options, pairs, self.family.name)
        return self.family(opts, info, torch.device("cpu"))

    def draw(self, family: Family, n: int = 4, seed: int = 0,
             labels: torch.Tensor | None = None, **settings: Any) -> Any:
        """n samples as the core draws them: settings by name, validated into the family's
        Settings (as `plugkit sample -s key=value` does)."""
        chosen = options.build(family.Settings, settings, family.name, "sampler setting")
        return family.sample(n, generator=torch.Generator().manual_seed(seed), labels=labels,
                             settings=chosen)

    def test_declares_its_contract(self):
        """The class attributes the core reads: a family that does not load is listed as
        broken with these reasons (plugkit.family.contract_errors)."""
        assert contract_errors(self.family) == []
        for flag in ("conditional", "likelihood", "val_loss_ranks_models"):
            assert isinstance(getattr(self.family, flag), bool), f"{flag} is not a bool"
        self.family.Settings()  # every sampler setting has a default
        for info in options.describe(self.family.Options) + \
                options.describe(self.family.Settings):
            assert info.help, f"{info.name} has no help text (plugkit info shows it)"

    def test_builds_networks_and_optimizers(self):
        family = self.build()  # a family without gradient steps (aim) has no optimizers
        assert family.modules() and (family.optimizers() or self.family.whole_batch)
        assert all(isinstance(m, torch.nn.Module) for m in family.modules().values())

    def test_training_lowers_the_loss_on_a_fixed_batch(self):
        if self.loss_key is None:
            pytest.skip(f"{self.family.name}: no single loss has to decrease")
        family, batch = self.build(), self.batch()
        losses = torch.tensor([family.train_step(batch)[self.loss_key]
                               for _ in range(self.steps)])
        assert losses.isfinite().all()
        # the last quarter against the first: a family may draw noise or rows per step
        quarter = max(self.steps // 4, 1)
        assert losses[-quarter:].mean() < losses[:quarter].mean(), losses.tolist()

    def test_val_loss_is_finite(self):
        loss = self.build().val_loss(self.batch())
        if isinstance(loss, tuple):  # (sum, count): the core divides
            loss, count = loss
            assert count > 0
        assert torch.isfinite(torch.tensor(float(loss)))
        if self.family.likelihood and self.info.modality == "text":
            # the negative log of a probability of discrete tokens cannot be negative
            assert loss >= 0, f"likelihood = True, but val_loss {loss} is no text NLL"

    def test_sample_shape_and_type(self):
        out = self.draw(self.build(), n=5)
        meta = self.info.meta
        if self.info.modality == "image":
            c, h, w = (meta[k] for k in ("channels", "height", "width"))
            assert out.shape == (5, c, h, w) and out.dtype == torch.float32
            assert 0 <= out.min() and out.max() <= 1
        elif self.info.modality == "table":
            assert out.shape == (5, tabular.width(meta["encoding"])) and out.isfinite().all()
            rows = codec.decode(self.info, out)  # the core must be able to decode them
            assert list(rows.columns) == [c["name"] for c in meta["encoding"]] and len(rows) == 5
        elif self.info.modality == "sequence":
            assert out.shape == (5, meta["length"], meta["features"]) and out.isfinite().all()
        else:
            assert out.dtype == torch.int64 and out.ndim == 2 and len(out) == 5
            assert 0 <= out.min() and out.max() <= len(meta["vocab"]), "tokens are 0..V"
            lines = codec.decode(self.info, out)
            assert len(lines) == 5 and all(isinstance(line, str) for line in lines)

    def test_checkpoint_round_trip(self, tmp_path):
        trained = self.build()
        trained.train_step(self.batch())
        checkpoint.save_weights(tmp_path, trained.modules())
        restored = self.build(seed=1)
        checkpoint.load_weights(tmp_path, restored.modules())
        assert _same(self.draw(trained), self.draw(restored))

    def test_deterministic_under_a_seed(self):
        runs = []
        for _ in range(2):
            family = self.build(seed=7)
            runs.append([family.train_step(self.batch()) for _ in range(3)])
        assert runs[0] == runs[1]

    def test_conditional_flag_tells_the_truth(self):
        """`conditional` (shown by `plugkit list` and `plugkit info`) says whether the family
        samples given a label. Built on this suite's data, with three classes added to images
        that have none: a family that learns p(x | label) (sets num_classes) must declare it,
        and then draw one sample per label given, different for different labels. A family
        that declares it must set num_classes on labelled data, and on a table draw only rows
        of the category that `where="column=value"` names (plugkit sample --where)."""
        cls, info = self.family, self.info
        if info.modality == "image" and not info.classes:
            info = DataInfo(info.modality, info.meta, ["a", "b", "c"])
        family = self.build(info=info)
        if family.num_classes:
            assert cls.conditional, (
                f"{cls.name} learns p(x | label) (num_classes = {family.num_classes}) but "
                "declares conditional = False, so `plugkit list` says it cannot sample by "
                "class: declare conditional = True")
            assert family.num_classes == len(info.classes or []), "num_classes != classes"
            labels = torch.arange(6) % family.num_classes
            assert len(self.draw(family, 6, labels=labels)) == 6
            zeros, ones = (self.draw(family, 4, labels=torch.full((4,), k)) for k in (0, 1))
            assert not _same(zeros, ones), "same noise, other label: the same samples"
        elif not cls.conditional:
            return  # neither conditions nor claims to
        elif info.modality == "table":
            self._check_where(family)
        elif getattr(family.options, "conditional", True) is False:
            pytest.skip(f"{cls.name}: this suite's options turn conditioning off")
        elif info.classes:
            pytest.fail(f"{cls.name} declares conditional = True but learns nothing of the "
                        f"labels of {info.modality} data: set self.num_classes = "
                        "len(info.classes) in __init__, or declare conditional = False")
        else:
            pytest.skip(f"{cls.name}: no labelled {info.modality} data to check conditioning")

    def _check_where(self, family: Family) -> None:
        column = next((c for c in family.info.meta["encoding"]
                       if c["kind"] == "categorical"), None)
        if column is None:
            pytest.skip(f"{family.name}: this suite's table has no categorical column")
        value = str([v for v in column["categories"] if v is not tabular.MISSING][-1])
        where = f"{column['name']}={value}"
        assert "where" in {f.name for f in dataclasses.fields(family.Settings)}, (
            f"{family.name} declares conditional = True but its Settings have no `where` "
            "field, so `plugkit sample --where` is refused")
        rows = codec.decode(family.info, self.draw(family, 6, where=where))
        assert len(rows) == 6 and (rows[column["name"]].astype(str) == value).all(), (
            f"{family.name} declares conditional = True but sample(where={where!r}) drew "
            f"{rows[column['name']].tolist()}")


    def test_private_gradients_are_per_record(self):
        """A family that declares `private` for this modality trains under DP-SGD: Opacus
        gives every trainable parameter of its private_parts a gradient per row, and a row's
        gradient depends on that row alone (changing another row leaves it as it was), as the
        clipping assumes. Rows after the batch's (a GAN's fakes) must not depend on it at all."""
        if self.info.modality not in self.family.private or self.family.private_mechanism:
            pytest.skip(f"{self.family.name} does not train {self.info.modality} by DP-SGD")
        pytest.importorskip("opacus", reason="plugkit[privacy] not installed")
        from plugkit import privacy

        batch = self.batch()
        other = batch.x.clone()
        other[-1] = batch.x[0]  # the last row replaced
        grads = []
        for x in (batch.x, other):
            try:
                family = self.build(info=dataclasses.replace(self.info, private=True))
            except UsageError as exc:  # options DP-SGD cannot train with, refused by name
                pytest.skip(f"{self.family.name} with {self.options}: {exc}")
            plan = privacy.plan(privacy.Budget(1.0, 1e-5), 0, 0, 1000, len(x), 1)
            private = privacy.DPSGD(family, plan, len(x))
            clipped = _clipped(private)
            torch.manual_seed(3)  # the same noise and draws for both batches
            family.train_step(Batch(x, batch.y))
            per_row = {}
            for name, module in family.private_parts()[0].items():
                for pname, p in module.named_parameters():
                    if p.requires_grad:
                        assert p in clipped, f"no per-sample gradient for {name}.{pname}"
                        g = clipped[p]  # a row per record, then any that hold none (fakes)
                        assert len(g) >= len(x) and g.shape[1:] == p.shape
                        per_row[f"{name}.{pname}"] = torch.cat([g[:len(x) - 1], g[len(x):]])
            grads.append(per_row)
        for name, g in grads[0].items():
            assert torch.allclose(g, grads[1][name], atol=1e-6), \
                f"{name}: a row's gradient changed with another row"


    def test_private_mechanism_spends_within_its_budget(self):
        """A family that spends its budget itself records every mechanism in its ledger and
        never asks for more than is left (the ledger refuses), until it is finished."""
        if not self.family.private_mechanism or self.info.modality not in self.family.private:
            pytest.skip(f"{self.family.name} has no private mechanism of its own")
        pytest.importorskip("opacus", reason="plugkit[privacy] not installed")
        from plugkit import privacy

        family = self.build(info=dataclasses.replace(self.info, private=True))
        family.ledger = privacy.Ledger(privacy.plan_own(privacy.Budget(1.0, 1e-5), 0, 0))
        for _ in range(200):
            family.train_step(self.batch())
            if family.finished():
                break
        assert family.finished(), "the budget is never spent"
        assert len(family.ledger.history()) > 1 and family.ledger.left >= -1e-12


def _clipped(private: Any) -> dict:
    """{parameter: its per-sample gradients [B, ...]} as DP-SGD's optimizers clip them, filled
    at their first step (what a family leaves in grad_sample afterwards may be another pass's,
    such as a GAN generator's step through its discriminator)."""
    seen: dict = {}
    for optimizer in private.optimizers.values():
        def pre_step(optimizer=optimizer, original=optimizer.pre_step):
            for p in optimizer.params:
                if p not in seen and getattr(p, "grad_sample", None) is not None:
                    seen[p] = p.grad_sample.detach().clone()
            return original()
        optimizer.pre_step = pre_step
    return seen


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a, b)
