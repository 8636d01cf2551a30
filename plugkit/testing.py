"""The conformance suite every family's tests reuse, built-in or third-party.

    from plugkit.testing import FamilyTests

    class TestMarkov(FamilyTests):
        family = Markov
        info = DataInfo("text", {"vocab": list("abc")})
        options = ["order=2"]

        def batch(self):
            return Batch(torch.tensor([[1, 2, 3, 0]]))

pytest collects the subclass and runs: build, a few steps lower the loss on a fixed batch,
sample shape/dtype, checkpoint round trip, determinism under a seed. A test that does not apply
to a family (say, a single decreasing loss for an adversarial one) is skipped with the reason.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from plugkit import checkpoint, options
from plugkit.data import codec, tabular
from plugkit.family import Batch, DataInfo, Family


class FamilyTests:
    family: ClassVar[type[Family]]
    info: ClassVar[DataInfo]
    options: ClassVar[list[str]] = []  # key=value pairs, as given with -o
    loss_key: ClassVar[str | None] = "loss"  # None: no single loss must go down (e.g. a GAN)
    steps: ClassVar[int] = 20  # training steps on the fixed batch

    def batch(self) -> Batch:
        """A small fixed batch of the family's data."""
        raise NotImplementedError

    def build(self, seed: int = 0) -> Family:
        torch.manual_seed(seed)
        opts = options.parse(self.family.Options, list(self.options), self.family.name)
        return self.family(opts, self.info, torch.device("cpu"))

    def draw(self, family: Family, n: int = 4, seed: int = 0) -> Any:
        return family.sample(n, generator=torch.Generator().manual_seed(seed))

    def test_builds_networks_and_optimizers(self):
        family = self.build()
        assert family.modules() and family.optimizers()
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
            assert len(out) == 5 and all(isinstance(line, str) for line in out)

    def test_checkpoint_round_trip(self, tmp_path):
        trained = self.build()
        trained.train_step(self.batch())
        checkpoint.save_weights(tmp_path, trained.modules())
        restored = self.build(seed=1)
        checkpoint.load_weights(tmp_path, restored.modules())
        a, b = self.draw(trained), self.draw(restored)
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b

    def test_deterministic_under_a_seed(self):
        runs = []
        for _ in range(2):
            family = self.build(seed=7)
            runs.append([family.train_step(self.batch()) for _ in range(3)])
        assert runs[0] == runs[1]
