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
Sequence windows [T, F] (standardized per feature) go through MLPs to a Gaussian decoder with a
learned scale per feature. Samples are the decoder's means, as for images: the learned scale
is the residual's marginal size, and adding it as noise independent in time made windows
jagged (sunspots, 400 epochs: detection accuracy 0.91 with the noise, 0.68 with the means;
floor 0.59).

Tables follow TVAE (Xu et al., "Modeling Tabular Data using Conditional GAN", NeurIPS 2019):
encoded rows (plugkit.data.tabular) are decoded into a Gaussian around tanh(output) per offset
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
from plugkit.data import tabular
from plugkit.families import image_nets
from plugkit.families.common import mlp, use_conv
from plugkit.families.tabular_heads import Conditions, RowLikelihood
from plugkit.family import Batch, DataInfo, Family
from plugkit.options import option


@dataclass
class Options:
    latent_dim: int = option(16, "size of the latent code z", min=1)
    hidden: int = option(256, "MLP width; the conv nets use hidden/8 base channels", min=8)
    arch: str = option("auto", "networks: mlp, conv, or auto (conv when height and width are "
                       "multiples of 4 and at least 16)", choices=("auto", "mlp", "conv"))
    lr: float = option(1e-3, "Adam learning rate", min=0.0, max=1.0)
    beta: float = option(1.0, "weight of the KL term (beta-VAE)", min=0.0)
    likelihood: str = option("bernoulli", "images: p(pixel | z), bernoulli or gaussian (one "
                             "learned scale for all pixels: Rybkin et al., sigma-VAE, 2021)",
                             choices=("bernoulli", "gaussian"))
    conditional: bool = option(True, "images with labels: learn p(image | label), so samples "
                               "can be drawn per class (--label, --per-class)")


class _LogScale(nn.Module):
    """Learned log standard deviations [size] (a module, so checkpoints and the optimizer see
    them), broadcast over the last dimension of the data."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.zeros(size))


class VAE(Family):
    name = "vae"
    description = "variational autoencoder (MLP or conv) with a fused reparameterization kernel"
    modalities = ("image", "table", "sequence")
    conditional = True  # images with labels: per class; tables: per category (--where)
    Options = Options
    default_dataset = "digits"

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        self.rows: RowLikelihood | None = None  # tables' p(row | z); images: options.likelihood
        self.conditions: Conditions | None = None
        if info.modality == "table":
            encoding = info.meta["encoding"]
            self.conditions = Conditions(encoding)
            encoder, decoder = self._mlp_nets(tabular.width(encoding), self.conditions.width)
            self.rows = RowLikelihood(tabular.spans(encoding))
            nets = {"encoder": encoder, "decoder": decoder, "likelihood": self.rows}
        else:  # images, or sequence windows (B, T, F) as one-channel T x F "images" to an MLP
            image = info.modality == "image"
            c, h, w = (info.meta["channels"], info.meta["height"], info.meta["width"]) if image \
                else (1, info.meta["length"], info.meta["features"])
            self.num_classes = len(info.classes or []) if options.conditional else 0
            conv, k = image and use_conv(options.arch, h, w), self.num_classes
            trunk, features = image_nets.down(c, h, w, conv, options.hidden)
            decoder = image_nets.up(options.latent_dim + k, c, h, w, conv, options.hidden)
            nets = {"encoder": trunk,  # [features, one-hot label] -> (mu, logvar) in "posterior"
                    "posterior": nn.Linear(features + k, 2 * options.latent_dim),
                    "decoder": decoder if image else nn.Sequential(decoder, nn.Flatten(1, 2))}
            if self._gaussian():  # log sigma: one for all pixels, one per sequence feature
                nets["log_sigma"] = _LogScale(1 if image else w)
            # the held-out ELBO bottoms out long before the samples stop improving (mnist-5k:
            # its best weights, at epoch ~100, gave label accuracy 0.78 and Fréchet distance
            # 2.44; the weights of epoch 362, 0.94 and 1.37), so it does not pick image models
            self.val_loss_ranks_models = not image
        self.net = nn.ModuleDict(nets).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=options.lr)

    def _mlp_nets(self, features: int, conditions: int) -> tuple[nn.Module, nn.Module]:
        o = self.options
        return (mlp([features + conditions, o.hidden, o.hidden, 2 * o.latent_dim]),
                mlp([o.latent_dim + conditions, o.hidden, o.hidden, features]))

    def _gaussian(self) -> bool:
        return self.info.modality == "sequence" or self.options.likelihood == "gaussian"

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def _losses(self, x: torch.Tensor, y: torch.Tensor | None = None,
                generator: torch.Generator | None = None, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample reconstruction NLL and KL, both [B], in nats (images: given labels y when
        conditional)."""
        if self.conditions is not None:  # tables: rows drawn with their conditions
            cond, rows = self.conditions.training(x, len(x), generator)  # (B, C), (B,)
            x = x[rows]
            mu, logvar = self.net["encoder"](torch.cat([x, cond], 1)).chunk(2, dim=1)
            z, kl = ops.reparameterize_kl(mu, logvar, eps=eps)  # (B, latent), (B,)
            out = self.net["decoder"](torch.cat([z, cond], 1))  # (B, D) row parameters
            return self.rows.nll(out, x), kl
        k = self.num_classes
        features = image_nets.with_label(self.net["encoder"](x), y, k)  # (B, F + K)
        mu, logvar = self.net["posterior"](features).chunk(2, dim=1)  # (B, latent) each
        z, kl = ops.reparameterize_kl(mu, logvar, eps=eps)  # (B, latent), (B,)
        out = self.net["decoder"](image_nets.with_label(z, y, k))  # (B, C, H, W) or (B, T, F)
        if self._gaussian():  # out: means
            log_sigma = self.net["log_sigma"].value
            z2 = ((x - out) / log_sigma.exp()).square()
            rec = (0.5 * z2 + log_sigma + 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
        else:  # out: pixel logits
            rec = F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(1)
        return rec, kl

    def train_step(self, batch: Batch) -> dict[str, float]:
        self.net.train()
        # eps from Batch.randn: each sample gets the same noise whatever the number of
        # processes (the kernel's own Philox stream is keyed per call, not per sample)
        rec, kl = self._losses(batch.x, batch.y, eps=batch.randn(self.options.latent_dim))
        loss = (rec + self.options.beta * kl).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "rec": rec.mean().item(), "kl": kl.mean().item()}

    def val_loss(self, batch: Batch) -> float:
        self.net.eval()  # conditions from their own seeded stream: the same every epoch
        rec, kl = self._losses(batch.x, batch.y, torch.Generator(self.device).manual_seed(0))
        return (rec + kl).mean().item()  # the negative ELBO, whatever beta trained with

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator,
               labels: torch.Tensor | None = None, **settings) -> torch.Tensor:
        """Pixel means in [0, 1] (of the given labels [n] when conditional), the means of
        standardized windows [n, T, F], or encoded table rows: conditions
        drawn by the data's category frequencies, or all on `where="column=value"` (plugkit
        sample --where)."""
        self.net.eval()
        z = torch.randn(n, self.options.latent_dim, generator=generator, device=self.device)
        if self.conditions is None:
            labels = image_nets.labels_or_random(labels, n, self.num_classes, generator,
                                                 self.device)
            out = self.net["decoder"](image_nets.with_label(z, labels, self.num_classes))
            if self.info.modality == "sequence":
                return out  # (n, T, F) means: see the module's docstring
            if self._gaussian():
                return out.clamp(0.0, 1.0)  # (n, C, H, W) means
            return torch.sigmoid(out)  # (n, C, H, W)
        cond = self.conditions.sampling(n, generator, self.device, settings.get("where"))
        out = self.net["decoder"](torch.cat([z, cond], 1))
        rows = self.rows.sample(out, generator)  # (n, D) encoded rows
        return self.conditions.impose(rows, cond)
