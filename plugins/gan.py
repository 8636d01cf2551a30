"""Generative adversarial network for images and tables (Goodfellow et al., "Generative
Adversarial Nets", NeurIPS 2014), with DCGAN's convolutional nets and Adam settings (Radford et
al., "Unsupervised Representation Learning with Deep Convolutional GANs", ICLR 2016).

A generator G maps noise z ~ N(0, I) to an image; a discriminator D gives one logit per image.
They play a game: D learns to tell real images from G(z), G learns to fool D. Both losses come
from the fused kernels plugkit.ops.gan_d_loss / gan_g_loss, in one of three forms:
  bce          the original game with the non-saturating generator loss, optionally with
               one-sided label smoothing (Salimans et al., "Improved Techniques for Training
               GANs", NeurIPS 2016)
  hinge        Lim & Ye, "Geometric GAN" (2017); Miyato et al., "Spectral Normalization" (2018)
  wasserstein  Arjovsky et al., "Wasserstein GAN" (ICML 2017), D's weights clipped to keep it
               (roughly) Lipschitz
G and D have their own learning rates (Heusel et al., "GANs Trained by a Two Time-Scale Update
Rule", NeurIPS 2017) and D may take several steps per G step. For tables, G writes encoded rows
(plugkit.data.tabular) whose categorical columns are Gumbel-softmax samples, as CTGAN does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from plugkit_families.common import GumbelSoftmax, draw_categories, mlp, use_conv
from torch import nn

from plugkit import ops
from plugkit.data import tabular
from plugkit.family import Batch, DataInfo, Family
from plugkit.ops.gan import KINDS
from plugkit.options import option


@dataclass
class Options:
    latent_dim: int = option(64, "size of the noise vector z", min=1)
    hidden: int = option(256, "MLP width; the conv nets use hidden/8 base channels", min=8)
    arch: str = option("auto", "networks: mlp, conv, or auto (conv when height and width are "
                       "multiples of 4 and at least 16)", choices=("auto", "mlp", "conv"))
    loss: str = option("bce", "the game: bce (non-saturating), hinge or wasserstein",
                       choices=KINDS)
    label_smoothing: float = option(0.0, "one-sided label smoothing of real images (bce only)",
                                    min=0.0, max=0.5)
    clip: float = option(0.01, "wasserstein only: clip D's weights to [-clip, clip]", min=0.0)
    lr_g: float = option(2e-4, "generator Adam learning rate", min=0.0, max=1.0)
    lr_d: float = option(2e-4, "discriminator Adam learning rate", min=0.0, max=1.0)
    d_steps: int = option(1, "discriminator steps per generator step", min=1, max=100)
    batch_norm: bool = option(True, "BatchNorm in G, as DCGAN (its per-process statistics make "
                              "multi-process runs differ slightly from one process)")

    def __post_init__(self) -> None:
        if self.label_smoothing != 0.0 and self.loss != "bce":
            raise ValueError(f"label_smoothing applies only to loss=bce, not loss={self.loss}")


class _LeakyReLU(nn.LeakyReLU):
    def __init__(self) -> None:
        super().__init__(0.2)  # DCGAN: leaky in D so that G gets gradients where D is unsure


def _mlp_nets(c: int, h: int, w: int, width: int, latent: int,
              norm: bool) -> tuple[nn.Module, nn.Module]:
    """BatchNorm in G, as DCGAN: without it G collapses onto one digit on digits within a few
    epochs (measured: sample spread 5% of the data's, against 90% with it, after 30 epochs)."""
    pixels = c * h * w
    generator = nn.Sequential(
        mlp([latent, width, width, pixels], nn.ReLU, norm=norm),  # (B, C*H*W) logits
        nn.Unflatten(1, (c, h, w)), nn.Sigmoid(),  # (B, C, H, W) in [0, 1]
    )
    discriminator = nn.Sequential(nn.Flatten(), mlp([pixels, width, width, 1], _LeakyReLU))
    return generator, discriminator


def _table_nets(spans: list[tabular.Span], width: int, latent: int,
                norm: bool) -> tuple[nn.Module, nn.Module]:
    """MLPs over encoded rows (B, D); G's last layer makes its categorical spans nearly one-hot."""
    features = spans[-1].end
    generator = nn.Sequential(mlp([latent, width, width, features], nn.ReLU, norm=norm),
                              GumbelSoftmax(spans))
    return generator, mlp([features, width, width, 1], _LeakyReLU)


def _conv_nets(c: int, h: int, w: int, base: int, latent: int,
               norm: bool) -> tuple[nn.Module, nn.Module]:
    """DCGAN-style: two transposed convolutions up in G, two stride-2 convolutions down in D.

    BatchNorm in G only: in D it would couple the images of a batch, and WGAN's critic must
    score each image on its own.
    """
    flat = 2 * base * (h // 4) * (w // 4)
    generator = nn.Sequential(
        nn.Linear(latent, flat), nn.ReLU(), nn.Unflatten(1, (2 * base, h // 4, w // 4)),
        nn.ConvTranspose2d(2 * base, base, 4, 2, 1),  # (B, base, H/2, W/2)
        nn.BatchNorm2d(base) if norm else nn.Identity(), nn.ReLU(),
        nn.ConvTranspose2d(base, c, 4, 2, 1), nn.Sigmoid(),  # (B, C, H, W) in [0, 1]
    )
    discriminator = nn.Sequential(
        nn.Conv2d(c, base, 4, 2, 1), _LeakyReLU(),  # (B, base, H/2, W/2)
        nn.Conv2d(base, 2 * base, 4, 2, 1), _LeakyReLU(),  # (B, 2base, H/4, W/4)
        nn.Flatten(), nn.Linear(flat, 1),  # (B, 1) logits
    )
    return generator, discriminator


class GAN(Family):
    name = "gan"
    description = "generative adversarial network (MLP or DCGAN) with fused GAN-loss kernels"
    modalities = ("image", "table")
    conditional = False
    val_loss_ranks_models = False  # D's held-out loss says how D is doing, not how G is
    Options = Options
    default_dataset = "digits"

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        if info.modality == "table":
            G, D = _table_nets(tabular.spans(info.meta["encoding"]), options.hidden,
                               options.latent_dim, options.batch_norm)
        elif use_conv(options.arch, info.meta["height"], info.meta["width"]):
            G, D = _conv_nets(*self._image_shape(), max(options.hidden // 8, 8),
                              options.latent_dim, options.batch_norm)
        else:
            G, D = _mlp_nets(*self._image_shape(), options.hidden, options.latent_dim,
                             options.batch_norm)
        self.G, self.D = G.to(device), D.to(device)
        betas = (0.5, 0.999)  # DCGAN: beta1 = 0.9 oscillates in the adversarial game
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=options.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=options.lr_d, betas=betas)

    def _image_shape(self) -> tuple[int, int, int]:
        return self.info.meta["channels"], self.info.meta["height"], self.info.meta["width"]

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.G, "discriminator": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, "d": self.opt_d}

    def _z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        # the global torch RNG by default: the core seeds it and checkpoints its state
        return torch.randn(n, self.options.latent_dim, generator=generator, device=self.device)

    def _noise(self, batch: Batch) -> torch.Tensor:
        """z for each real row, from Batch.randn: the same numbers whatever the number of
        processes. BatchNorm in G needs at least two rows."""
        return batch.randn(self.options.latent_dim) if len(batch.x) > 1 else self._z(2)

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        o = self.options
        real_logits = self.D(real).flatten()  # (B,)
        fake_logits = self.D(fake).flatten()  # (B,)
        return ops.gan_d_loss(real_logits, fake_logits, kind=o.loss,
                              label_smoothing=o.label_smoothing)

    def train_step(self, batch: Batch) -> dict[str, float]:
        self.G.train()
        self.D.train()
        for _ in range(self.options.d_steps):  # every D step sees the same real batch, fresh z
            fake = self.G(self._noise(batch)).detach()  # (B, C, H, W); no gradient into G
            d_loss = self._d_loss(batch.x, fake)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            if self.options.loss == "wasserstein":
                with torch.no_grad():
                    for p in self.D.parameters():
                        p.clamp_(-self.options.clip, self.options.clip)
        # G step: D's weights are only read, so D needs no gradients of its own
        self.D.requires_grad_(False)
        g_loss = ops.gan_g_loss(self.D(self.G(self._noise(batch))).flatten(),
                                kind=self.options.loss)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}

    def val_loss(self, batch: Batch) -> float:
        """D's loss on held-out real images against fakes from a fixed noise batch.

        It measures how well D tells unseen real images from G's: for bce, 2 ln 2 ~ 1.386 when
        D cannot tell them apart at all, near 0 when it always can; lower means D is winning
        (or overfits the training images, when the training d_loss is much lower). The noise
        comes from its own generator, seeded the same each call, so the number is comparable
        across epochs and validation leaves the training RNG stream untouched.
        """
        self.G.eval()
        self.D.eval()
        with torch.no_grad():
            z = self._z(len(batch.x), torch.Generator(self.device).manual_seed(0))
            return self._d_loss(batch.x, self.G(z)).item()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator, labels=None,
               **settings) -> torch.Tensor:
        self.G.eval()
        z = self._z(n, generator)
        if self.info.modality == "table":  # categories drawn with `generator`, not Gumbel noise
            categorical = self.G[-1].categorical
            return draw_categories(self.G[:-1](z), categorical, generator)  # (n, D)
        return self.G(z)  # (n, C, H, W) in [0, 1]
