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
               (roughly) Lipschitz, or with `gp` > 0 a gradient penalty instead (Gulrajani et
               al., "Improved Training of Wasserstein GANs", NeurIPS 2017)
G and D have their own learning rates (Heusel et al., "GANs Trained by a Two Time-Scale Update
Rule", NeurIPS 2017) and D may take several steps per G step; D's layers may be spectrally
normalized (Miyato et al., ICLR 2018). Samples come from a moving average of G's weights.
With labelled images G takes the label beside z and D judges by projection (Miyato & Koyama,
ICLR 2018; plugkit/families/image_nets.py), so samples are drawn per class.

Tables follow CTGAN (Xu et al., "Modeling Tabular Data using Conditional GAN", NeurIPS 2019):
G writes encoded rows (plugkit.formats.tabular: tanh offsets within modes, Gumbel-softmax one-hot
spans) given noise and a conditional vector that names one categorical column's value; D judges
rows with their condition, `pac` at a time (PacGAN: Lin et al., NeurIPS 2018: a pack of
collapsed samples is easier to spot than one), with dropout; G also pays the cross-entropy of
not producing the category it was asked for. Conditions are drawn by training-by-sampling
(plugkit/families/tabular_heads.py), which is also how `plugkit sample --where column=value` works.
Measured on adult (4 min each, batch 500):
pac 1 / 2 / 4 / 10 gave detection AUC 0.81 / 0.85 / 0.87 / 0.88 and TV max 0.23 / 0.15 /
0.08 / 0.06 (smaller packs: rows more real, categories collapsing onto the common ones); the
average of G took TV max from 0.20 to 0.06 and detection from 0.90 to 0.88.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from plugkit import ops
from plugkit.errors import UsageError
from plugkit.families import image_nets
from plugkit.families.tabular_heads import Conditions, RowHead, Settings, residual_mlp, where_of
from plugkit.family import Batch, DataInfo, Family
from plugkit.formats import tabular
from plugkit.ops.gan import KINDS
from plugkit.options import option


@dataclass
class Options:
    latent_dim: int = option(64, "size of the noise vector z", min=1)
    hidden: int = image_nets.hidden_option()
    arch: str = image_nets.arch_option()
    loss: str = option("bce", "the game: bce (non-saturating), hinge or wasserstein",
                       choices=KINDS)
    label_smoothing: float = option(0.0, "one-sided label smoothing of real images (bce only)",
                                    min=0.0, max=0.5)
    clip: float = option(0.01, "wasserstein only: clip D's weights to [-clip, clip]", min=0.0)
    gp: float = option(0.0, "weight of the gradient penalty (WGAN-GP); with loss=wasserstein "
                       "it replaces weight clipping", min=0.0)
    lr_g: float = option(2e-4, "generator Adam learning rate", min=0.0, max=1.0)
    lr_d: float = option(2e-4, "discriminator Adam learning rate", min=0.0, max=1.0)
    d_steps: int = option(1, "discriminator steps per generator step", min=1, max=100)
    batch_norm: bool = option(True, "BatchNorm in G, as DCGAN (its per-process statistics make "
                              "multi-process runs differ slightly from one process)")
    pac: int = option(10, "tables: rows D judges together (PacGAN)", min=1, max=64)
    dropout: float = option(0.5, "tables: dropout in D's hidden layers", min=0.0, max=0.9)
    ema: float = option(0.995, "decay of the moving average of G's weights that sampling "
                        "uses (0: sample with G itself)", min=0.0, max=0.9999)
    spectral_norm: bool = option(False, "images: spectral normalization of D's layers "
                                 "(Miyato et al., ICLR 2018)")
    conditional: bool = image_nets.conditional_option()

    def __post_init__(self) -> None:
        if self.label_smoothing != 0.0 and self.loss != "bce":
            raise ValueError(f"label_smoothing applies only to loss=bce, not loss={self.loss}")


class _LeakyReLU(nn.LeakyReLU):
    def __init__(self) -> None:
        super().__init__(0.2)  # DCGAN: leaky in D so that G gets gradients where D is unsure


def _z(n: int, o: Options, device: torch.device,
       generator: torch.Generator | None = None) -> torch.Tensor:
    # the global torch RNG by default: the core seeds it and checkpoints its state
    return torch.randn(n, o.latent_dim, generator=generator, device=device)


class _Images:
    """Images [B, C, H, W], with their labels [B] when conditional: G maps [z, one-hot label]
    to images in [0, 1]; D, a projection critic (image_nets), scores each image with its label.
    """

    conditions = None  # labels condition images, not a table's conditional vector
    pack = 1  # D scores images one at a time

    def __init__(self, o: Options, info: DataInfo, device: torch.device) -> None:
        self.o, self.device = o, device
        c, h, w = info.meta["channels"], info.meta["height"], info.meta["width"]
        self.shape, self.conv = (c, h, w), image_nets.use_conv(o.arch, h, w)
        self.classes = image_nets.num_classes(info.classes, o.conditional)

    def nets(self) -> tuple[nn.Module, nn.Module]:
        """BatchNorm in G only, as DCGAN: without it the MLP G collapses onto one digit on
        digits within a few epochs (measured: sample spread 5% of the data's, against 90% with
        it, after 30 epochs); in D it would couple the images of a batch, and WGAN's critic must
        score each image on its own."""
        o, k, shape, conv = self.o, self.classes, self.shape, self.conv
        generator = nn.Sequential(
            image_nets.up(o.latent_dim + k, *shape, conv, o.hidden, norm=o.batch_norm),
            nn.Sigmoid())
        discriminator = image_nets.Critic(*image_nets.down(*shape, conv, o.hidden, _LeakyReLU), k)
        if o.spectral_norm:
            for m in list(discriminator.modules()):
                if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)):
                    nn.utils.parametrizations.spectral_norm(m)
        return generator, discriminator

    def real(self, batch: Batch, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's real inputs and their conditions: the images and their labels (None when
        unconditional)."""
        return batch.x, batch.y if self.classes else None

    def fake(self, G: nn.Module, n: int, cond: torch.Tensor | None,
             generator: torch.Generator | None = None, batch: Batch | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(D's fake inputs, G's output): images for the labels. In training z comes from
        Batch.randn, the same numbers whatever the number of processes; a batch of one gets
        two, as BatchNorm in G needs."""
        from_batch = batch is not None and len(batch.x) > 1
        z = batch.randn(self.o.latent_dim) if from_batch else _z(n, self.o, self.device, generator)
        if cond is not None and len(cond) < len(z):  # a batch of one, padded to two
            cond = cond.repeat(len(z))[:len(z)]
        out = G(image_nets.with_label(z, cond, self.classes))  # (n, C, H, W)
        return out, out

    def fake_conditions(self, u: torch.Tensor) -> torch.Tensor | None:
        """Under DP, the labels G draws for, one per uniform draw u [n]: uniform, not the
        batch's (which are records)."""
        if not self.classes:
            return None
        return (u * self.classes).long().clamp(max=self.classes - 1)

    def g_losses(self, out: torch.Tensor, cond: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return {}  # the game's alone

    def sample(self, G: nn.Module, z: torch.Tensor, generator: torch.Generator,
               labels: torch.Tensor | None, where: str | None) -> torch.Tensor:
        labels = image_nets.labels_or_random(labels, len(z), self.classes, generator, z.device)
        return G(image_nets.with_label(z, labels, self.classes))  # (n, C, H, W)


class _PackCritic(nn.Sequential):
    """CTGAN's D over packs of rows: (B, D + C) [row, condition] vectors -> (B/pac,) logits. The
    condition is in every row already, so D's `cond` argument, which images need, goes unread.
    """

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x).flatten()


class _Tables:
    """CTGAN: G residual blocks from [z, condition] to row logits (B, D), read by RowHead;
    D an MLP with dropout over packs of `pac` [row, condition] vectors, one logit per pack."""

    classes = 0  # conditioned on a category (plugkit sample --where), not on a label

    def __init__(self, o: Options, info: DataInfo, device: torch.device) -> None:
        self.o, self.device, self.private = o, device, info.private
        encoding = info.meta["encoding"]
        self.conditions = Conditions(encoding)
        self.head = RowHead(encoding).to(device)
        self.width, self.pack = tabular.width(encoding), o.pac

    def nets(self) -> tuple[nn.Module, nn.Module]:
        o, d, c = self.o, self.width, self.conditions.width
        generator = residual_mlp([o.latent_dim + c, o.hidden, o.hidden], d)
        discriminator = _PackCritic(
            nn.Unflatten(0, (-1, o.pac)), nn.Flatten(),  # (B, F) -> (B/pac, pac*F)
            nn.Linear(o.pac * (d + c), o.hidden), _LeakyReLU(), nn.Dropout(o.dropout),
            nn.Linear(o.hidden, o.hidden), _LeakyReLU(), nn.Dropout(o.dropout),
            nn.Linear(o.hidden, 1))
        return generator, discriminator

    def real(self, batch: Batch, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """D's real inputs and their conditions: rows drawn by training-by-sampling beside their
        conditional vectors, as many as the batch rounded up to whole packs. Under DP each row
        once, beside its own condition."""
        x = batch.x
        if self.private:  # per global row in training; validation's own stream otherwise
            u = batch.rand() if generator is None else \
                torch.rand(len(x), generator=generator, device=x.device)
            cond = self.conditions.of_rows(x, u)
            return torch.cat([x, cond], 1), cond
        n = math.ceil(max(len(x), 2) / self.pack) * self.pack
        cond, rows = self.conditions.training(x, n, generator)
        return torch.cat([x[rows], cond], 1), cond  # (n, D + C), (n, C)

    def fake(self, G: nn.Module, n: int, cond: torch.Tensor,
             generator: torch.Generator | None = None, batch: Batch | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(D's fake inputs, G's output): rows beside their conditions. z comes from
        `generator`, not Batch.randn: these rows were drawn anew, not the batch's; under DP,
        one fake per row of the batch, from Batch.randn."""
        if self.private and batch is not None and n == len(batch.x):
            z = batch.randn(self.o.latent_dim)
        else:
            z = _z(n, self.o, self.device, generator)
        if len(cond) < n:  # a private batch of one row, padded to two
            cond = cond.repeat(n, 1)[:n]
        out = G(torch.cat([z, cond], 1))  # (n, D) logits
        return torch.cat([self.head(out), cond], 1), out

    def fake_conditions(self, u: torch.Tensor) -> torch.Tensor:
        """Under DP, the conditions G draws for, one per uniform draw u [n]: by the released
        (noisy) category counts, not the batch's rows."""
        return self.conditions.by_frequency(u)

    def g_losses(self, out: torch.Tensor, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        # CTGAN: G makes the asked-for category, not any real one
        return {"cond_loss": self.conditions.penalty(out, cond).mean()}

    def sample(self, G: nn.Module, z: torch.Tensor, generator: torch.Generator,
               labels: torch.Tensor | None, where: str | None) -> torch.Tensor:
        cond = self.conditions.sampling(len(z), generator, z.device, where)
        rows = self.head.draw(G(torch.cat([z, cond], 1)), generator)  # not Gumbel's draws
        return self.conditions.impose(rows, cond)  # (n, D)


_MODALITIES = {"image": _Images, "table": _Tables}


def _check_private(o: Options) -> None:
    """What DP-SGD on D cannot do, refused by name: several D steps on one Poisson batch (the
    accountant counts one), the gradient penalty (a gradient of a gradient, which Opacus does
    not clip per row), packs (a pack is one row to the clipping) and spectral normalization
    (its power iteration is not a layer Opacus knows)."""
    refused = {"pac": (o.pac != 1, "1"), "d_steps": (o.d_steps != 1, "1"),
               "gp": (o.gp != 0, "0"), "spectral_norm": (o.spectral_norm, "false")}
    for name, (bad, allowed) in refused.items():
        if bad:
            raise UsageError(f"gan under `dp_epsilon` needs -o {name}={allowed}: DP-SGD "
                             "clips one row of one batch per step (docs/privacy.md)")


class GAN(Family):
    name = "gan"
    description = "generative adversarial network (MLP or DCGAN) with fused GAN-loss kernels"
    modalities = ("image", "table")
    conditional = True  # images with labels: per class; tables: per category (--where)
    val_loss_ranks_models = False  # D's held-out loss says how D is doing, not how G is
    # DP-SGD on D alone (private_parts): G learns from D's outputs, which is post-processing
    private = ("image", "table")
    # DP-SGD clips per row: a pack would be one row to it; the learning rates are those
    # docs/privacy.md measured (the images' 5e-4 below was measured without DP)
    private_options = {"pac": 1, "lr_g": 2e-4, "lr_d": 2e-4}
    # tables: CTGAN's ~500 rows a step train more per second than 64 on a CPU (adult, 300 s,
    # one thread: 64 / 256 / 512 / 1,024 rows gave detection 0.883 / 0.860 / 0.842 / 0.904)
    batch_sizes = {"table": 512}
    # images: DCGAN's 2e-4 is slow per second on a CPU (mnist-5k, one thread: Fréchet distance
    # at 24 s 6.63 -> 1.05, at 300 s 0.158 -> 0.075 with 5e-4; docs/results.md)
    modality_options = {"image": {"lr_g": 5e-4, "lr_d": 5e-4}}
    Options = Options
    Settings = Settings
    default_dataset = "digits"

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        if info.private:
            _check_private(options)
        self.data = _MODALITIES[info.modality](options, info, device)  # what differs with it
        self.num_classes = self.data.classes
        G, D = self.data.nets()
        self.G, self.D = G.to(device), D.to(device)
        # the moving average of G's weights that samples: a GAN's last iterate swings around;
        # the average does not (Yazici et al., "The Unusual Effectiveness of Averaging in GAN
        # Training", ICLR 2019)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False) if options.ema > 0 else None
        betas = (0.5, 0.999)  # DCGAN: beta1 = 0.9 oscillates in the adversarial game
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=options.lr_g, betas=betas, fused=True)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=options.lr_d, betas=betas, fused=True)

    def modules(self) -> dict[str, nn.Module]:
        extra = {"generator_ema": self.G_ema} if self.G_ema is not None else {}
        return {"generator": self.G, "discriminator": self.D} | extra

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, "d": self.opt_d}

    def private_parts(self) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
        return {"discriminator": self.D}, {"d": self.opt_d}

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor,
                cond: torch.Tensor | None) -> torch.Tensor:
        o = self.options
        return ops.gan_d_loss(self.D(real, cond), self.D(fake, cond), kind=o.loss,
                              label_smoothing=o.label_smoothing)

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor,
                          cond: torch.Tensor | None) -> torch.Tensor:
        """Gulrajani et al., "Improved Training of Wasserstein GANs" (NeurIPS 2017): D's gradient
        norm pushed to 1 at points between real and fake samples; a pack is one point."""
        groups = len(real) // self.data.pack
        alpha = torch.rand(groups, 1, device=real.device)  # (G, 1), one per pack
        alpha = alpha.repeat_interleave(len(real) // groups, 0).view(-1, *[1] * (real.dim() - 1))
        mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(mix, cond).sum(), mix, create_graph=True)
        return (grad.reshape(groups, -1).norm(dim=1) - 1).square().mean()

    def train_step(self, batch: Batch) -> dict[str, float]:
        if self.info.private:
            return self._private_step(batch)
        self.G.train()
        self.D.train()
        real, cond = self.data.real(batch)
        n = max(len(real), 2)  # as many fakes as reals; BatchNorm in G needs two or more
        for _ in range(self.options.d_steps):  # every D step sees the same real batch, fresh z
            fake = self.data.fake(self.G, n, cond, batch=batch)[0].detach()[:len(real)]
            d_loss = self._d_loss(real, fake, cond)  # detached above: no gradient into G
            if self.options.gp:
                d_loss = d_loss + self.options.gp * self._gradient_penalty(real, fake, cond)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            if self.options.loss == "wasserstein" and not self.options.gp:
                with torch.no_grad():
                    for p in self.D.parameters():
                        p.clamp_(-self.options.clip, self.options.clip)
        return self._g_step(batch, n, len(real), cond, d_loss)

    def _private_step(self, batch: Batch) -> dict[str, float]:
        """A step of DP-SGD (plugkit.privacy) for D: each record of the Poisson batch once,
        beside its own condition, and as many fakes drawn for conditions that are not the
        records' (fake_conditions), so that G learns from D's outputs alone. D scores reals and
        fakes in one pass: Opacus pairs each row's activations with its gradient, which two
        passes before one backward would not guarantee. The fakes' rows are clipped too; they
        hold no record."""
        self.G.train()
        self.D.train()
        real, cond = self.data.real(batch)
        rows, n = len(real), max(len(real), 2)  # BatchNorm in G needs two or more
        # drawn per global row (the same whatever the number of processes) where it can be
        u = batch.rand() if n == rows else torch.rand(n, device=self.device)
        fake_cond = self.data.fake_conditions(u)
        fake = self.data.fake(self.G, n, fake_cond, batch=batch)[0].detach()[:rows]
        both = None if cond is None else torch.cat([cond, fake_cond[:rows]])
        logits = self.D(torch.cat([real, fake]), both)
        d_loss = ops.gan_d_loss(logits[:rows], logits[rows:], kind=self.options.loss,
                                label_smoothing=self.options.label_smoothing)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        if self.options.loss == "wasserstein":
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-self.options.clip, self.options.clip)
        return self._g_step(batch, n, rows, fake_cond, d_loss)

    def _g_step(self, batch: Batch, n: int, rows: int, cond: torch.Tensor | None,
                d_loss: torch.Tensor) -> dict[str, float]:
        """G's step on n fakes for `cond`, D scoring the first `rows` of them."""
        # D's weights are only read, so D needs no gradients of its own; under DP-SGD Opacus'
        # hooks on D expect a per-sample gradient for every pass (as in Opacus' DCGAN), so D's
        # are computed and dropped
        private = self.info.private
        self.D.requires_grad_(private)
        fake, out = self.data.fake(self.G, n, cond, batch=batch)
        scored = None if cond is None else cond[:rows]
        g_loss = ops.gan_g_loss(self.D(fake[:rows], scored), kind=self.options.loss)
        losses = {"d_loss": d_loss.item(), "g_loss": g_loss.item()}
        for name, extra in self.data.g_losses(out, cond).items():
            g_loss = g_loss + extra
            losses[name] = extra.item()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        if self.G_ema is not None:
            image_nets.update_average(self.G_ema, self.G, self.opt_g, self.options.ema)
        if private:
            self.opt_d.zero_grad(set_to_none=True)
        self.D.requires_grad_(True)
        return losses

    def val_loss(self, batch: Batch) -> float:
        """D's loss on held-out real samples against fakes from a fixed noise batch.

        It measures how well D tells unseen real samples from G's: for bce, 2 ln 2 ~ 1.386 when
        D cannot tell them apart at all, near 0 when it always can; lower means D is winning
        (or overfits the training data, when the training d_loss is much lower). The noise (and
        for tables the conditions) comes from its own generator, seeded the same each call, so
        the number is comparable across epochs and validation leaves the training RNG alone.
        """
        self.G.eval()
        self.D.eval()
        with torch.no_grad():
            generator = torch.Generator(self.device).manual_seed(0)
            real, cond = self.data.real(batch, generator)
            fake = self.data.fake(self.G, max(len(real), 2), cond, generator)[0][:len(real)]
            return self._d_loss(real, fake, cond).item()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator,
               labels: torch.Tensor | None = None, settings: Settings | None = None
               ) -> torch.Tensor:
        """Images in [0, 1] (of the given labels [n] when conditional), or encoded table rows:
        conditions drawn by the data's category frequencies, or all on `where="column=value"`
        (plugkit sample --where). Drawn by the moving average of G when there is one."""
        where = where_of(settings, self.data.conditions)
        G = self.G_ema if self.G_ema is not None else self.G
        G.eval()
        return self.data.sample(G, _z(n, self.options, self.device, generator), generator,
                                labels, where)
