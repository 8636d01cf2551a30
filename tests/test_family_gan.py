"""The built-in GAN family: build, one training step, sampling, options, the fused losses, and a
short real run on digits through the core's trainer."""

import json
import math

import numpy as np
import pytest
import torch
from helpers import assert_ran, run_recorded, table_batch, table_info
from safetensors.torch import load_file

from plugkit import options, plugins, sampling, training
from plugkit.errors import UsageError
from plugkit.families.gan import GAN, Options
from plugkit.family import Batch, DataInfo
from plugkit.testing import FamilyTests

CPU = torch.device("cpu")
DIGITS = DataInfo("image", {"channels": 1, "height": 8, "width": 8}, None)
RGB16 = DataInfo("image", {"channels": 3, "height": 16, "width": 16}, None)
REGISTERED = pytest.mark.skipif("gan" not in plugins.entries(), reason="the gan entry point is "
                                "not registered (pyproject [project.entry-points] + reinstall)")


class TestGANConformance(FamilyTests):
    family = GAN
    info = DIGITS
    options = ["hidden=32", "latent_dim=8"]
    loss_key = None  # adversarial: neither loss has to fall on a fixed batch

    def batch(self):
        return Batch(torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)))


class TestGANTable(FamilyTests):
    family = GAN
    info = table_info()
    options = ["hidden=32", "latent_dim=8"]
    loss_key = None

    def batch(self):
        return table_batch(self.info)


def build(info=DIGITS, **opts):
    return GAN(Options(**{"hidden": 32, "latent_dim": 8, **opts}), info, CPU)


def images(info, n=16):
    m = info.meta
    return torch.rand(n, m["channels"], m["height"], m["width"])


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("info,opts,conv", [
    (DIGITS, {}, False),
    (DIGITS, {"loss": "hinge", "d_steps": 2}, False),
    (DIGITS, {"loss": "wasserstein"}, False),
    (DIGITS, {"label_smoothing": 0.1}, False),
    (RGB16, {}, True),  # auto picks DCGAN for sizes that are multiples of 4 and >= 16
    (DIGITS, {"arch": "mlp"}, False),
])
def test_a_step_updates_both_networks(info, opts, conv):
    family = build(info, **opts)
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in family.D.modules())
    assert has_conv == conv
    g, d = snapshot(family.G), snapshot(family.D)
    losses = family.train_step(Batch(images(info)))
    assert set(losses) == {"d_loss", "g_loss"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in losses.values())
    # every weight moves (a bias may not: hinge's gradient for D's last bias is 0 while all
    # logits lie in (-1, 1), as they do at initialisation)
    for before, net in ((g, family.G), (d, family.D)):
        for a, (name, b) in zip(before, net.named_parameters(), strict=True):
            assert name.endswith("bias") or not torch.equal(a, b), name
    assert all(p.requires_grad for p in family.D.parameters())  # the G step gives them back


def test_checkpoints_keep_their_names():
    """Saved runs load by these names (plugkit.checkpoint): the nets' code may move, not them."""
    table = build(table_info())
    assert list(table.D.state_dict()) == ["2.weight", "2.bias", "5.weight", "5.bias",
                                          "8.weight", "8.bias"]
    assert [k for k in table.G.state_dict() if k.endswith("weight")] == [
        "0.fc.weight", "0.bn.weight", "1.fc.weight", "1.bn.weight", "2.weight"]
    images = build(LABELLED)
    assert list(images.D.state_dict()) == [
        "trunk.0.weight", "trunk.0.bias", "trunk.2.weight", "trunk.2.bias", "linear.weight",
        "linear.bias", "embed.weight"]


def test_wasserstein_clips_the_critic():
    family = build(loss="wasserstein", clip=0.01)
    family.train_step(Batch(images(DIGITS)))
    assert max(p.abs().max().item() for p in family.D.parameters()) <= 0.01


def test_contract_names():
    family = build()
    assert set(family.modules()) == {"generator", "discriminator", "generator_ema"}
    assert set(build(ema=0.0).modules()) == {"generator", "discriminator"}
    assert set(family.optimizers()) == {"g", "d"}
    assert family.optimizers()["d"].defaults["betas"] == (0.5, 0.999)
    assert GAN.name == "gan" and GAN.modalities == ("image", "table") and GAN.conditional


@pytest.mark.parametrize("info", [DIGITS, RGB16])
def test_samples_are_images_and_reproducible(info):
    family = build(info)
    family.train_step(Batch(images(info)))  # moves BatchNorm statistics off their defaults
    a = family.sample(10, generator=torch.Generator().manual_seed(3))
    b = family.sample(10, generator=torch.Generator().manual_seed(3))
    c = family.sample(10, generator=torch.Generator().manual_seed(4))
    m = info.meta
    assert a.shape == (10, m["channels"], m["height"], m["width"]) and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_val_loss_is_repeatable_and_leaves_the_training_rng_alone():
    family = build()
    batch = Batch(images(DIGITS))
    family.train_step(batch)
    state = torch.get_rng_state()
    first, second = family.val_loss(batch), family.val_loss(batch)
    assert first == second and math.isfinite(first)
    assert torch.equal(state, torch.get_rng_state())


def test_options_validation():
    opts = options.parse(Options, ["loss=hinge", "lr_d=4e-4", "d_steps=5"], "gan")
    assert (opts.loss, opts.lr_d, opts.d_steps) == ("hinge", 4e-4, 5)
    with pytest.raises(UsageError, match="label_smoothing applies only to loss=bce"):
        options.parse(Options, ["loss=hinge", "label_smoothing=0.1"], "gan")
    with pytest.raises(UsageError, match="loss must be one of bce, hinge, wasserstein"):
        options.parse(Options, ["loss=lsgan"], "gan")
    with pytest.raises(UsageError, match="d_steps must be >= 1"):
        options.parse(Options, ["d_steps=0"], "gan")
    with pytest.raises(ValueError):
        Options(loss="wasserstein", label_smoothing=0.1)


def test_the_fused_losses_run(backend):
    family = build()
    batch = Batch(images(DIGITS))
    losses, names = run_recorded(family.train_step, batch)
    assert all(math.isfinite(v) for v in losses.values())
    assert_ran(backend, names, "gan_d_loss")
    assert_ran(backend, names, "gan_g_loss")


def test_a_few_epochs_on_digits_by_hand():
    """The game stays balanced: neither loss collapses to 0 nor blows up."""
    from plugkit import data

    ds = data.load("digits", None, None)
    x, y = torch.from_numpy(ds.x), torch.from_numpy(ds.labels)
    family = GAN(Options(hidden=64, latent_dim=16, lr_g=1e-3, lr_d=1e-3), DataInfo(
        "image", ds.meta, ds.classes), CPU)
    for _ in range(3 * len(x) // 128):  # three epochs of random batches
        rows = torch.randint(len(x), (128,))
        losses = family.train_step(Batch(x[rows], y[rows]))
    assert 0.05 < losses["d_loss"] < 5 and 0.05 < losses["g_loss"] < 10, losses
    fake = family.sample(256, generator=torch.Generator().manual_seed(0))
    assert abs(fake.mean().item() - x.mean().item()) < 0.15  # G learned the ink density
    spread = fake.std(0).mean() / x.std(0).mean()
    assert spread > 0.3, f"mode collapse: samples spread {spread:.2f} of the data's"


@pytest.mark.parametrize("info", [DIGITS, RGB16])
def test_a_batch_of_one(info):
    """The core's last batch can hold a single image; BatchNorm in G must not refuse it."""
    losses = build(info).train_step(Batch(images(info, n=1)))
    assert all(math.isfinite(v) for v in losses.values())


SMALL = ["hidden=32", "latent_dim=8"]


def run(tmp_path, name, epochs, resume=False):
    rows = []
    config = training.TrainConfig(family="gan", out=tmp_path / name, epochs=epochs,
                                  batch_size=128, options=SMALL, resume=resume)
    return training.train(config, rows.append), rows


@REGISTERED
def test_trains_on_digits_through_the_core(tmp_path):
    run_dir, rows = run(tmp_path, "run", 2)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(math.isfinite(r[k]) for r in rows for k in ("d_loss", "g_loss", "val_loss"))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["family"] == "gan" and record["status"] == "done"
    weights = load_file(str(run_dir / "model.safetensors"))
    assert any(k.startswith("generator.") for k in weights)
    assert any(k.startswith("discriminator.") for k in weights)
    out = sampling.sample(run_dir, n=10, out=tmp_path / "x.npy", seed=1)
    x = np.load(out, allow_pickle=False)
    assert x.shape == (10, 1, 8, 8) and 0 <= x.min() and x.max() <= 1


@REGISTERED
def test_resume_continues_bit_for_bit(tmp_path):
    straight, _ = run(tmp_path, "straight", 2)
    run(tmp_path, "resumed", 1)
    resumed, _ = run(tmp_path, "resumed", 2, resume=True)
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@REGISTERED
def test_cli_train_and_sample(tmp_path):
    from typer.testing import CliRunner

    from plugkit.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "gan", "--out", str(tmp_path / "run"), "--epochs", "1",
                                 "--batch-size", "128", "-o", "hidden=32", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {"d_loss", "g_loss", "val_loss"} <= set(rows[-1])
    sampled = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "4",
                                  "--out", str(tmp_path / "grid.png")])
    assert sampled.exit_code == 0, sampled.output


LABELLED = DataInfo("image", {"channels": 1, "height": 16, "width": 16}, list("abc"))


class TestGANConditionalSpectral(FamilyTests):
    family = GAN
    info = LABELLED
    options = ["hidden=64", "latent_dim=8", "spectral_norm=true"]
    loss_key = None

    def batch(self):
        g = torch.Generator().manual_seed(0)
        return Batch(torch.rand(12, 1, 16, 16, generator=g), torch.arange(12) % 3)


def test_spectral_norm_parametrizes_every_layer_of_d():
    family = build(LABELLED, spectral_norm=True)
    layers = [m for m in family.D.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d,
                                                              torch.nn.Embedding))]
    assert len(layers) == 4  # two convolutions, the logit and the projection's embedding
    assert all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    assert family.num_classes == 3


def test_the_moving_average_warms_up_then_decays_slowly():
    family = build(ema=0.99, batch_norm=False)
    batch = Batch(images(DIGITS))
    for t in (1, 2, 200):  # G's step count after the step
        while int(family.opt_g.state[next(family.G.parameters())].get("step", 0)) < t - 1:
            family.train_step(batch)
        before = [p.clone() for p in family.G_ema.parameters()]
        family.train_step(batch)
        decay = min(0.99, (1 + t) / (10 + t))  # 2/11, 3/12, then the cap
        for average, old, new in zip(family.G_ema.parameters(), before, family.G.parameters(),
                                     strict=True):
            torch.testing.assert_close(average, decay * old + (1 - decay) * new)
