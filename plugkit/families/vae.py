"""Variational autoencoder for images, tables and sequence windows (Kingma & Welling,
"Auto-Encoding Variational Bayes", ICLR 2014).

The encoder maps a sample to a diagonal Gaussian q(z|x) = N(mu, exp(logvar)); a sample
z = mu + exp(logvar/2) * eps and KL(q || N(0, I)) come from one fused kernel,
plugkit.ops.reparameterize_kl. For images the decoder gives a Bernoulli logit per pixel, or with
likelihood=gaussian a mean per pixel under one learned scale (Rybkin et al., "Simple and
Effective VAE Training with Calibrated Decoders", ICML 2021). The loss is the negative ELBO per
sample in nats: reconstruction + beta * KL (beta = 1 is the plain VAE; Higgins et al., ICLR 2017).
With labelled images the VAE is conditional (Sohn et al., NeurIPS 2015): encoder and decoder
take the label's one-hot (plugkit/families/image_nets.py), so samples are drawn per class.
Image samples decode codes drawn from a Gaussian per class fitted to the encoder's codes while
training (option `prior`, FittedPrior), where N(0, I) decodes many images between classes,
and a Bernoulli decoder's means are sharpened until they are as grey as the training images
(option `sharpen`, PixelSharpness), where the plain means look blurred.
Sequence windows [T, F] (standardized per feature) go through MLPs to a Gaussian decoder with a
learned scale per feature. Samples are the decoder's means, as for images: the learned scale
is the residual's marginal size, and adding it as noise independent in time made windows
jagged (sunspots, 400 epochs: detection accuracy 0.91 with the noise, 0.68 with the means;
floor 0.59).

Tables follow TVAE (Xu et al., "Modeling Tabular Data using Conditional GAN", NeurIPS 2019):
encoded rows (plugkit.formats.tabular) are decoded into a Gaussian around tanh(output) per offset
within a mode, with a learned scale, and a categorical distribution per one-hot span. Encoder
and decoder also take CTGAN's conditional vector (a conditional VAE: Sohn et al., NeurIPS 2015),
drawn by training-by-sampling (plugkit/families/tabular_heads.py), so rare categories are trained on
more often and `plugkit sample --where column=value` draws rows of one category directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plugkit import ops
from plugkit.families import image_nets
from plugkit.families.tabular_heads import Conditions, RowLikelihood, Settings, where_of
from plugkit.family import Batch, DataInfo, Family
from plugkit.formats import tabular
from plugkit.options import option


@dataclass
class Options:
    latent_dim: int = option(16, "size of the latent code z", min=1)
    hidden: int = image_nets.hidden_option()
    arch: str = image_nets.arch_option()
    lr: float = option(1e-3, "Adam learning rate", min=0.0, max=1.0)
    beta: float = option(1.0, "weight of the KL term (beta-VAE); lower it when the samples "
                         "of a class look alike (docs/results.md: 0.1 on digits)", min=0.0)
    likelihood: str = option("bernoulli", "images: p(pixel | z), bernoulli or gaussian (one "
                             "learned scale for all pixels: Rybkin et al., sigma-VAE, 2021)",
                             choices=("bernoulli", "gaussian"))
    conditional: bool = image_nets.conditional_option()
    prior: str = option("fitted", "images: the codes samples decode, fitted (a Gaussian per "
                        "class fitted to the encoder's codes while training) or standard "
                        "(N(0, I), the prior the KL term uses)", choices=("fitted", "standard"),
                        absent="standard")
    sharpen: bool = option(True, "images under bernoulli: samples are the decoder's means "
                           "sharpened (logits scaled) until their pixels are as far from grey "
                           "as the training images' (PixelSharpness)", absent=False)
    sigma_floor: float = option(0.01, "tables: the smallest scale of a numeric value within its "
                                "mode (offsets, in units of 4 std of the mode)", min=1e-4, max=1.0)


class _LogScale(nn.Module):
    """Learned log standard deviations [size] (a module, so checkpoints and the optimizer see
    them), broadcast over the last dimension of the data."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The scales for each sample of x [B, ..., size]: [B, 1, ..., size], broadcast as the
        value alone would be, but taken by a call so that DP-SGD sees each sample's part of
        the gradient (per_sample_grads; x must not require grad, as RowLikelihood's)."""
        shape = (len(x),) + (1,) * (x.dim() - 2) + (len(self.value),)
        return self.value.expand(shape)

    @staticmethod
    def per_sample_grads(layer: _LogScale, activations: list, backprops: torch.Tensor
                         ) -> dict[nn.Parameter, torch.Tensor]:
        return {layer.value: backprops.reshape(len(backprops), -1)}


class FittedPrior(nn.Module):
    """A Gaussian per class (one without labels) over the codes, fitted while training to the
    codes the encoder gives the training images: what samples decode (option `prior`).

    A VAE's samples decode z ~ N(0, I), but the codes of real images (its aggregate posterior)
    fill that ball unevenly, so many draws decode to images between classes and shapes. Fitting
    a density to the codes after the fact and sampling from it is the remedy of Ghosh et al.
    ("From Variational to Deterministic Autoencoders", ICLR 2020; Dai & Wipf's two-stage VAE,
    ICLR 2019, fits a second VAE). Here it is fitted during training, by the same optimizer, to
    the negative log-likelihood of each step's codes, detached, so nothing else learns from it
    and a resumed or multi-process run fits it like any weight. mnist-5k after 5 minutes (one
    thread, the same weights): Fréchet distance 1.26 -> 0.86, label accuracy 0.94 -> 0.98;
    fashion-mnist label accuracy 0.76 -> 0.79 (docs/results.md; a mixture of 10 Gaussians a
    class, fitted after training to every code, went further: 0.61 on another mnist-5k run).

    Its factor starts at the identity and its mean at 0, so it starts as N(0, I), and sampling
    maps the same standard draws through it: z = mean[y] + L[y] eps."""

    def __init__(self, classes: int, dim: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(max(classes, 1), dim))
        # L's strictly lower part, and the log of its diagonal, in one square per class
        self.factor_raw = nn.Parameter(torch.zeros(max(classes, 1), dim, dim))

    def _factors(self, y: torch.Tensor | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = y if y is not None else torch.zeros(n, dtype=torch.long, device=self.mean.device)
        raw = self.factor_raw[index]  # (B, d, d)
        factor = raw.tril(-1) + torch.diag_embed(raw.diagonal(dim1=1, dim2=2).exp())
        return self.mean[index], factor

    def nll(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """-log N(z; mean[y], L[y] L[y]^T) [B], without the constant."""
        mean, factor = self._factors(y, len(z))
        w = torch.linalg.solve_triangular(factor, (z - mean)[:, :, None], upper=False)[:, :, 0]
        return 0.5 * w.square().sum(1) + factor.diagonal(dim1=1, dim2=2).log().sum(1)

    def forward(self, eps: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Standard draws eps [n, d] mapped to draws of the fitted Gaussians of classes y."""
        mean, factor = self._factors(y, len(eps))
        return mean + (factor @ eps[:, :, None])[:, :, 0]


class PixelSharpness(nn.Module):
    """How grey the training images are, the mean of x (1 - x) over every pixel trained on (a
    running mean, kept by each training step like BatchNorm's statistics), and the factor that
    sharpens a sampler's logits to it (option `sharpen`).

    A Bernoulli decoder's mean is each pixel's probability of being ink: where the decoder is
    unsure where an edge lies it gives grey, so its means are greyer than the images it was
    trained on, and samples look blurred. Scaling the logits by s >= 1 before the sigmoid
    moves each pixel towards its likelier value; s is chosen so that the means are exactly as
    grey, on average, as the training images, a statistic of the training data alone (nothing
    held out picks it). Post hoc on the same weights (300 s, one thread; docs/results.md):
    mnist-5k Fréchet distance 0.54 -> 0.16, detection 0.80 -> 0.58, recall 0.86 -> 0.94;
    fashion-mnist 0.84 -> 0.56 and label accuracy 0.805 -> 0.819; digits 0.18 -> 0.14; the
    RGB photos unchanged (6.84, 6.85)."""

    most = 8.0  # the largest factor: past it a mean is all but a hard threshold

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("target", torch.zeros((), dtype=torch.float64))
        self.register_buffer("seen", torch.zeros((), dtype=torch.float64))  # images

    @torch.no_grad()
    def observe(self, batch: Batch) -> None:
        """Adds a batch's training images [B, C, H, W] (every process's) to the running mean."""
        x = batch.x
        grey = (x * (1 - x)).flatten(1).mean(1, dtype=torch.float64).sum()
        rows = torch.tensor(float(len(x)), dtype=torch.float64, device=x.device)
        grey, rows = batch.sum_over_processes(torch.stack([grey, rows]))
        self.seen += rows
        self.target += (grey / rows - self.target) * rows / self.seen

    @torch.no_grad()
    def factor(self, logits: torch.Tensor) -> float:
        """The s in [1, most] for which sigmoid(s * logits) is as grey as the training images
        (by bisection: each pixel's p (1 - p) falls as s grows); 1 for means no greyer."""
        def grey(s: float) -> float:
            p = torch.sigmoid(logits * s)
            return (p * (1 - p)).mean(dtype=torch.float64).item()

        target = self.target.item()
        if self.seen.item() == 0 or grey(1.0) <= target:
            return 1.0
        low, high = 1.0, self.most
        for _ in range(30):
            mid = (low + high) / 2
            low, high = (mid, high) if grey(mid) > target else (low, mid)
        return (low + high) / 2


class _Images:
    """Images [B, C, H, W]: a trunk (MLP or conv) to features, [features, one-hot label] to
    (mu, logvar) in "posterior", and a decoder from [z, one-hot label] to pixel logits, or to
    means under one learned scale (likelihood=gaussian)."""

    conditions = None  # labels condition images, not a table's conditional vector
    # the held-out ELBO bottoms out long before the samples stop improving (mnist-5k: its best
    # weights, at epoch ~100, gave label accuracy 0.78 and Fréchet distance 2.44; the weights
    # of epoch 362, 0.94 and 1.37), so it does not pick image models
    ranks_models = False

    def __init__(self, o: Options, info: DataInfo) -> None:
        self.o = o
        c, h, w = info.meta["channels"], info.meta["height"], info.meta["width"]
        self.shape, self.conv = (c, h, w), image_nets.use_conv(o.arch, h, w)
        self.gaussian, self.scales = o.likelihood == "gaussian", 1  # one sigma for all pixels
        self.classes = image_nets.num_classes(info.classes, o.conditional)
        # DP-SGD: a density fitted to the codes, or the pixels' statistic, would read the
        # records outside the clipping
        self.fitted_prior = o.prior == "fitted" and not info.private
        self.sharpen = o.sharpen and not self.gaussian and not info.private

    def nets(self) -> dict[str, nn.Module]:
        o = self.o
        trunk, features = image_nets.down(*self.shape, self.conv, o.hidden)
        decoder = self.decoder()  # before "posterior": the order draws the initial weights
        posterior = nn.Linear(features + self.classes, 2 * o.latent_dim)  # -> (mu, logvar)
        nets = {"encoder": trunk, "posterior": posterior, "decoder": decoder}
        if self.gaussian:
            nets["log_sigma"] = _LogScale(self.scales)
        if self.fitted_prior:
            nets["prior"] = FittedPrior(self.classes, o.latent_dim)
        if self.sharpen:
            nets["sharpness"] = PixelSharpness()
        return nets

    def decoder(self) -> nn.Module:
        o = self.o
        return image_nets.up(o.latent_dim + self.classes, *self.shape, self.conv, o.hidden)

    def losses(self, net: nn.ModuleDict, x: torch.Tensor, y: torch.Tensor | None, *,
               generator: torch.Generator | None = None, eps: torch.Tensor | None = None,
               u: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(reconstruction, KL, the fitted prior's NLL of the codes) [B] each (the last 0 without
        one); `u` is a table's (_Tables.losses), unread here."""
        k = self.classes
        features = image_nets.with_label(net["encoder"](x), y, k)  # (B, F + K)
        mu, logvar = net["posterior"](features).chunk(2, dim=1)  # (B, latent) each
        z, kl = ops.reparameterize_kl(mu, logvar, eps=eps)  # (B, latent), (B,)
        out = net["decoder"](image_nets.with_label(z, y, k))  # (B, C, H, W) or (B, T, F)
        if self.gaussian:  # out: means
            log_sigma = net["log_sigma"](x.detach())  # (B, 1, ..., scales)
            z2 = ((x - out) / log_sigma.exp()).square()
            rec = (0.5 * z2 + log_sigma + 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
        else:  # out: pixel logits
            rec = F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(1)
        fit = (net["prior"].nll(z.detach(), y if k else None) if "prior" in net
               else torch.zeros_like(kl))
        return rec, kl, fit

    def sample(self, net: nn.ModuleDict, z: torch.Tensor, generator: torch.Generator,
               labels: torch.Tensor | None, where: str | None) -> torch.Tensor:
        labels = image_nets.labels_or_random(labels, len(z), self.classes, generator, z.device)
        out = self.decode(net, z, labels)
        if "sharpness" in net:
            out = out * self.sharpening(net, z.device)
        return self.means(out)

    def decode(self, net: nn.ModuleDict, eps: torch.Tensor, labels: torch.Tensor | None
               ) -> torch.Tensor:
        """The decoder's output for standard draws eps [n, latent] (through the fitted prior
        when there is one)."""
        if "prior" in net:
            eps = net["prior"](eps, labels if self.classes else None)
        return net["decoder"](image_nets.with_label(eps, labels, self.classes))

    def sharpening(self, net: nn.ModuleDict, device: torch.device) -> float:
        """PixelSharpness's factor, found on a fixed draw (seed 0, the classes in turn), so that
        it depends on the weights alone, not on which or how many samples are asked for."""
        n = 256
        eps = torch.randn(n, self.o.latent_dim, device=device,
                          generator=torch.Generator(device).manual_seed(0))
        labels = torch.arange(n, device=device) % self.classes if self.classes else None
        return net["sharpness"].factor(self.decode(net, eps, labels))

    def means(self, out: torch.Tensor) -> torch.Tensor:
        return out.clamp(0.0, 1.0) if self.gaussian else torch.sigmoid(out)  # (n, C, H, W)


class _Sequences(_Images):
    """Standardized windows [B, T, F] as one-channel T x F images to MLPs, always under a
    Gaussian, with one learned scale per feature; samples are its means (module docstring)."""

    ranks_models = True

    def __init__(self, o: Options, info: DataInfo) -> None:
        self.o = o
        t, f = info.meta["length"], info.meta["features"]
        self.shape, self.conv = (1, t, f), False
        self.gaussian, self.scales = True, f
        self.classes = image_nets.num_classes(info.classes, o.conditional)
        self.fitted_prior = self.sharpen = False  # measured on images only

    def decoder(self) -> nn.Module:
        return nn.Sequential(super().decoder(), nn.Flatten(1, 2))  # (B, 1, T, F) -> (B, T, F)

    def means(self, out: torch.Tensor) -> torch.Tensor:
        return out  # (n, T, F)


class _Tables:
    """TVAE: encoded rows [B, D] beside CTGAN's conditional vector into an MLP encoder, z beside
    it into an MLP decoder, whose output RowLikelihood reads as p(row | z)."""

    classes = 0  # conditioned on a category (plugkit sample --where), not on a label
    ranks_models = True

    def __init__(self, o: Options, info: DataInfo) -> None:
        self.o, self.encoding = o, info.meta["encoding"]
        self.conditions = Conditions(self.encoding)
        self.private = info.private  # DP-SGD: every row once, its condition its own

    def nets(self) -> dict[str, nn.Module]:
        o, d, c = self.o, tabular.width(self.encoding), self.conditions.width
        return {"encoder": image_nets.mlp([d + c, o.hidden, o.hidden, 2 * o.latent_dim]),
                "decoder": image_nets.mlp([o.latent_dim + c, o.hidden, o.hidden, d]),
                "likelihood": RowLikelihood(tabular.spans(self.encoding), o.sigma_floor)}

    def losses(self, net: nn.ModuleDict, x: torch.Tensor, y: torch.Tensor | None, *,
               generator: torch.Generator | None = None, eps: torch.Tensor | None = None,
               u: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if self.private:  # u: Batch.rand in training, the same whatever the processes
            u = u if u is not None else torch.rand(len(x), generator=generator, device=x.device)
            cond = self.conditions.of_rows(x, u)  # (B, C)
        else:
            cond, rows = self.conditions.training(x, len(x), generator)  # (B, C), (B,)
            x = x[rows]  # rows drawn with their conditions
        mu, logvar = net["encoder"](torch.cat([x, cond], 1)).chunk(2, dim=1)
        z, kl = ops.reparameterize_kl(mu, logvar, eps=eps)  # (B, latent), (B,)
        out = net["decoder"](torch.cat([z, cond], 1))  # (B, D) row parameters
        return net["likelihood"].nll(out, x), kl, torch.zeros_like(kl)

    def sample(self, net: nn.ModuleDict, z: torch.Tensor, generator: torch.Generator,
               labels: torch.Tensor | None, where: str | None) -> torch.Tensor:
        cond = self.conditions.sampling(len(z), generator, z.device, where)
        out = net["decoder"](torch.cat([z, cond], 1))
        rows = net["likelihood"].sample(out, generator)  # (n, D) encoded rows
        return self.conditions.impose(rows, cond)


_MODALITIES = {"image": _Images, "sequence": _Sequences, "table": _Tables}


class VAE(Family):
    name = "vae"
    description = "variational autoencoder (MLP or conv) with a fused reparameterization kernel"
    modalities = ("image", "table", "sequence")
    conditional = True  # images with labels: per class; tables: per category (--where)
    # DP-SGD (plugkit train --dp-epsilon): every layer per-sample
    private = ("table", "image", "sequence")
    # under DP a numeric value's offset within its mode has a scale of at least 1 (4 std of
    # the mode): with TVAE's learned scales (down to 0.01) the offsets' Gaussian terms took
    # ~85% of each row's clipped gradient on adult, leaving the categories' logits below the
    # noise (docs/privacy.md, "Measured trade-off"); tables only, the others ignore it.
    # beta 1: a private run samples from N(0, I) (no fitted prior), which a lighter KL term
    # would leave further from the codes
    private_options = {"sigma_floor": 1.0, "beta": 1.0}
    # images: a lighter KL term; with the fitted prior, samples stay typical of their class
    # while the decoder reconstructs sharper (docs/results.md, "The KL weight on images":
    # fashion-mnist label accuracy 0.789 -> 0.803 / 0.798 (two trainings), mnist-5k Fréchet
    # distance 0.87 -> 0.44);
    # tables keep 1 (adult at beta 0.5: detection 0.743 -> 0.766, TV max 0.042 -> 0.066)
    modality_options = {"image": {"beta": 0.3}}
    Options = Options
    Settings = Settings
    default_dataset = "digits"

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        self.data = _MODALITIES[info.modality](options, info)  # what differs with the data
        self.num_classes = self.data.classes
        self.val_loss_ranks_models = self.data.ranks_models
        self.net = nn.ModuleDict(self.data.nets()).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=options.lr, fused=True)

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def train_step(self, batch: Batch) -> dict[str, float]:
        self.net.train()
        # eps from Batch.randn: each sample gets the same noise whatever the number of
        # processes (the kernel's own Philox stream is keyed per call, not per sample)
        eps = batch.randn(self.options.latent_dim)
        # u: per-row choices under DP (a table row's condition column), drawn like eps
        u = batch.rand() if self.info.private else None
        if "sharpness" in self.net:  # the training images' greyness, which sampling matches
            self.net["sharpness"].observe(batch)
        rec, kl, fit = self.data.losses(self.net, batch.x, batch.y, eps=eps, u=u)  # (B,) each
        loss = (rec + self.options.beta * kl).mean()
        self.optimizer.zero_grad(set_to_none=True)
        (loss + fit.mean()).backward()  # fit: only the fitted prior learns from it
        self.optimizer.step()
        return {"loss": loss.item(), "rec": rec.mean().item(), "kl": kl.mean().item()}

    def val_loss(self, batch: Batch) -> float:
        self.net.eval()  # conditions from their own seeded stream: the same every epoch
        generator = torch.Generator(self.device).manual_seed(0)
        rec, kl, _ = self.data.losses(self.net, batch.x, batch.y, generator=generator)
        return (rec + kl).mean().item()  # the negative ELBO, whatever beta trained with

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator,
               labels: torch.Tensor | None = None, settings: Settings | None = None
               ) -> torch.Tensor:
        """Pixel means in [0, 1] (of the given labels [n] when conditional), the means of
        standardized windows [n, T, F], or encoded table rows: conditions
        drawn by the data's category frequencies, or all on `where="column=value"` (plugkit
        sample --where)."""
        where = where_of(settings, self.data.conditions)
        self.net.eval()
        z = torch.randn(n, self.options.latent_dim, generator=generator, device=self.device)
        return self.data.sample(self.net, z, generator, labels, where)
