"""The built-in VAE through the shared conformance suite (MLP and conv networks)."""

import torch
from helpers import table_batch, table_info

from plugkit.families.vae import VAE
from plugkit.family import Batch, DataInfo
from plugkit.testing import FamilyTests


class TestVAEMLP(FamilyTests):
    family = VAE
    info = DataInfo("image", {"channels": 1, "height": 8, "width": 8})
    options = ["hidden=32", "latent_dim=4"]

    def batch(self):
        return Batch(torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)))


class TestVAEConv(FamilyTests):
    family = VAE
    info = DataInfo("image", {"channels": 3, "height": 16, "width": 16})
    options = ["hidden=64", "latent_dim=8", "arch=conv"]

    def batch(self):
        return Batch(torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)))


class TestVAETable(FamilyTests):
    family = VAE
    info = table_info()
    options = ["hidden=32", "latent_dim=4"]
    steps = 60  # rows and their conditions are drawn anew every step (training-by-sampling)

    def batch(self):
        return table_batch(self.info)


LABELLED = DataInfo("image", {"channels": 1, "height": 16, "width": 16}, list("abc"))


def labelled_batch(n=12):
    g = torch.Generator().manual_seed(0)
    return Batch(torch.rand(n, 1, 16, 16, generator=g), torch.arange(n) % 3)


class TestVAEConditional(FamilyTests):
    family = VAE
    info = LABELLED
    options = ["hidden=64", "latent_dim=8"]

    def batch(self):
        return labelled_batch()


class TestVAEGaussian(FamilyTests):
    family = VAE
    info = LABELLED
    options = ["hidden=64", "latent_dim=8", "likelihood=gaussian"]

    def batch(self):
        return labelled_batch()


def test_gaussian_likelihood_learns_its_scale_and_samples_stay_in_range():
    from plugkit import options

    torch.manual_seed(0)
    opts = options.parse(VAE.Options, [*TestVAEGaussian.options, "lr=0.01"], "vae")
    family = VAE(opts, LABELLED, torch.device("cpu"))
    batch = labelled_batch()
    for _ in range(100):
        family.train_step(batch)
    # from 0 towards log(0.29), the std of uniform pixels around a mean the decoder learns
    assert family.net["log_sigma"].value.item() < -0.5
    drawn = family.sample(6, generator=torch.Generator().manual_seed(0),
                          labels=torch.tensor([0, 1, 2, 0, 1, 2]))
    assert drawn.shape == (6, 1, 16, 16) and 0 <= drawn.min() and drawn.max() <= 1


def test_the_label_changes_the_sample():
    family = TestVAEConditional().build()
    g = [torch.Generator().manual_seed(0) for _ in range(2)]
    a = family.sample(4, generator=g[0], labels=torch.zeros(4, dtype=torch.long))
    b = family.sample(4, generator=g[1], labels=torch.full((4,), 2))
    assert not torch.allclose(a, b)  # same z, other label


class TestVAESequence(FamilyTests):
    family = VAE
    info = DataInfo("sequence", {"length": 12, "features": 2, "mean": [0.0, 0.0],
                                 "std": [1.0, 1.0]})
    options = ["hidden=32", "latent_dim=4"]

    def batch(self):
        t = torch.arange(12.0)
        phase = torch.rand(8, 1, generator=torch.Generator().manual_seed(0)) * 6
        return Batch(torch.stack([torch.sin(t + phase), torch.cos(t + phase)], dim=2))


def test_sequence_samples_are_the_decoded_means():
    family = TestVAESequence().build()
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    drawn = family.sample(3, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (3, 12, 2)
    torch.testing.assert_close(drawn, family.net["decoder"](z))



def test_checkpoints_keep_their_names():
    """Saved runs load by these names (plugkit.checkpoint): the nets' code may move, not them."""
    sequence = TestVAESequence().build().net.state_dict()
    assert [k for k in sequence if k.endswith("weight")] == [
        "encoder.1.0.weight", "encoder.1.2.weight", "posterior.weight", "decoder.0.0.0.weight",
        "decoder.0.0.2.weight", "decoder.0.0.4.weight"] and "log_sigma.value" in sequence
    table = TestVAETable().build().net.state_dict()
    assert [k for k in table if k.endswith("weight")] == [
        "encoder.0.weight", "encoder.2.weight", "encoder.4.weight", "decoder.0.weight",
        "decoder.2.weight", "decoder.4.weight"] and "likelihood.log_sigma" in table


def test_the_fitted_prior_recovers_a_gaussian_per_class():
    """FittedPrior, fitted by its NLL alone, gets each class's mean and covariance, and maps
    standard draws onto them."""
    from plugkit.families.vae import FittedPrior

    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[2.0, -1.0, 0.0], [-3.0, 0.5, 1.0]])
    factors = torch.tensor([[[1.0, 0, 0], [0.8, 0.5, 0], [-0.3, 0.2, 0.3]],
                            [[0.4, 0, 0], [0.0, 2.0, 0], [0.5, -0.5, 1.0]]])
    y = torch.arange(4_000) % 2
    z = means[y] + (factors[y] @ torch.randn(4_000, 3, 1, generator=g))[:, :, 0]
    prior = FittedPrior(2, 3)
    optimizer = torch.optim.Adam(prior.parameters(), lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        prior.nll(z, y).mean().backward()
        optimizer.step()
    with torch.no_grad():
        drawn = prior(torch.randn(20_000, 3, generator=g), torch.arange(20_000) % 2)
    for k in range(2):
        own = drawn[k::2]
        torch.testing.assert_close(own.mean(0), means[k], atol=0.06, rtol=0)
        torch.testing.assert_close(own.T.cov(), factors[k] @ factors[k].T, atol=0.08, rtol=0.05)


def test_image_samples_decode_codes_of_the_fitted_prior():
    """A new image run fits its prior to the codes while training; sampling draws from it (an
    identity prior gives other images); runs from before it and private runs have none."""
    from plugkit import options

    family = TestVAEConditional().build()
    prior = family.net["prior"]
    for _ in range(200):
        family.train_step(labelled_batch())
    assert prior.mean.abs().max() > 0.05  # moved off N(0, I) towards the codes
    g = [torch.Generator().manual_seed(0) for _ in range(2)]
    labels = torch.tensor([0, 1, 2])
    fitted = family.sample(3, generator=g[0], labels=labels)
    with torch.no_grad():
        prior.mean.zero_()
        prior.factor_raw.zero_()
    assert not torch.allclose(fitted, family.sample(3, generator=g[1], labels=labels))
    older = options.build(VAE.Options, options.recorded(VAE.Options, {"latent_dim": 8}), "vae")
    assert "prior" not in VAE(older, LABELLED, torch.device("cpu")).net
    private = DataInfo("image", LABELLED.meta, LABELLED.classes, private=True)
    assert "prior" not in VAE(VAE.Options(), private, torch.device("cpu")).net


def test_pixel_sharpness_tracks_the_training_images_and_sharpens_to_them():
    """The running mean is the mean of x (1 - x) over every image observed, whatever the batch
    sizes; the factor makes logits exactly that grey, is 1 for means already sharper, and
    stops at `most`."""
    from plugkit.families.vae import PixelSharpness

    g = torch.Generator().manual_seed(0)
    sharpness = PixelSharpness()
    images = [torch.rand(n, 1, 4, 4, generator=g) ** 3 for n in (5, 17, 2)]
    for x in images:
        sharpness.observe(Batch(x))
    every = torch.cat(images).double()
    torch.testing.assert_close(sharpness.target, (every * (1 - every)).mean())
    logits = torch.randn(64, 1, 4, 4, generator=g)  # greyer than the images
    s = sharpness.factor(logits)
    p = torch.sigmoid(logits.double() * s)
    assert s > 1.2
    torch.testing.assert_close((p * (1 - p)).mean(), sharpness.target, rtol=1e-6, atol=0)
    assert sharpness.factor(logits * 50) == 1.0
    assert abs(sharpness.factor(logits * 1e-4) - PixelSharpness.most) < 1e-6
    assert PixelSharpness().factor(logits) == 1.0  # nothing observed: the plain means


def test_image_samples_are_sharpened_to_the_training_images():
    """A new Bernoulli image run tracks its images' greyness while training, not in eval mode,
    and its samples are the sharpened means; runs from before it, private runs and Gaussian
    decoders keep the plain means."""
    from plugkit import options

    family = TestVAEConditional().build()
    sharpness = family.net["sharpness"]
    for _ in range(3):
        family.train_step(labelled_batch())
    seen = sharpness.seen.item()
    family.val_loss(labelled_batch())
    assert seen == 36 and sharpness.seen.item() == seen
    labels = torch.tensor([0, 1, 2])
    sharpened = family.sample(3, generator=torch.Generator().manual_seed(0), labels=labels)
    s = family.data.sharpening(family.net, torch.device("cpu"))
    with torch.no_grad():
        z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
        logits = family.data.decode(family.net, z, labels)
    assert s > 1.0
    torch.testing.assert_close(sharpened, torch.sigmoid(logits * s))
    older = options.build(VAE.Options, options.recorded(VAE.Options, {"latent_dim": 8}), "vae")
    assert "sharpness" not in VAE(older, LABELLED, torch.device("cpu")).net
    private = DataInfo("image", LABELLED.meta, LABELLED.classes, private=True)
    assert "sharpness" not in VAE(VAE.Options(), private, torch.device("cpu")).net
    gaussian = options.build(VAE.Options, {"likelihood": "gaussian"}, "vae")
    assert "sharpness" not in VAE(gaussian, LABELLED, torch.device("cpu")).net


def test_conv_nets_refuse_sides_that_are_not_multiples_of_4():
    """Two stride-2 layers up make (H // 4) * 4 pixels: a 10x10 image would come back 8x8."""
    import pytest

    from plugkit import options
    from plugkit.errors import UsageError
    from plugkit.families.gan import GAN

    info = DataInfo("image", {"channels": 3, "height": 10, "width": 10})
    for family in (VAE, GAN):
        opts = options.parse(family.Options, ["arch=conv"], family.name)
        with pytest.raises(UsageError, match="arch=conv needs .* multiples of 4, these are 10x10"):
            family(opts, info, torch.device("cpu"))
