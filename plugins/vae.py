"""Variational autoencoder for images and tables (Kingma & Welling, "Auto-Encoding Variational
Bayes", ICLR 2014).

The encoder maps a sample to a diagonal Gaussian q(z|x) = N(mu, exp(logvar)); a sample
z = mu + exp(logvar/2) * eps and KL(q || N(0, I)) come from one fused kernel,
plugkit.ops.reparameterize_kl. The decoder gives a Bernoulli logit per pixel for images. The loss
is the negative ELBO per sample in nats: reconstruction + beta * KL (beta = 1 is the plain VAE).

Tables follow TVAE (Xu et al., "Modeling Tabular Data using Conditional GAN", NeurIPS 2019):
encoded rows (plugkit.data.tabular) are decoded into a Gaussian around tanh(output) per offset
within a mode, with a learned scale, and a categorical distribution per one-hot span. Encoder
and decoder also take CTGAN's conditional vector (a conditional VAE: Sohn et al., NeurIPS 2015),
drawn by training-by-sampling (plugins/tabular_heads.py), so rare categories are trained on
more often and `plugkit sample --where column=value` draws rows of one category directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from plugkit_families.common import mlp, use_conv
from plugkit_families.tabular_heads import Conditions, RowLikelihood
from torch import nn

from plugkit import ops
from plugkit.data import tabular
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


def _conv_nets(c: int, h: int, w: int, base: int, latent: int) -> tuple[nn.Module, nn.Module]:
    """DCGAN-style: two stride-2 convolutions down, two transposed convolutions up."""
    flat = 2 * base * (h // 4) * (w // 4)
    encoder = nn.Sequential(
        nn.Conv2d(c, base, 4, 2, 1), nn.ReLU(),  # (B, base, H/2, W/2)
        nn.Conv2d(base, 2 * base, 4, 2, 1), nn.ReLU(),  # (B, 2base, H/4, W/4)
        nn.Flatten(), nn.Linear(flat, 2 * latent),
    )
    decoder = nn.Sequential(
        nn.Linear(latent, flat), nn.ReLU(), nn.Unflatten(1, (2 * base, h // 4, w // 4)),
        nn.ConvTranspose2d(2 * base, base, 4, 2, 1), nn.ReLU(),  # (B, base, H/2, W/2)
        nn.ConvTranspose2d(base, c, 4, 2, 1),  # (B, C, H, W) logits
    )
    return encoder, decoder


class VAE(Family):
    name = "vae"
    description = "variational autoencoder (MLP or conv) with a fused reparameterization kernel"
    modalities = ("image", "table")
    Options = Options
    default_dataset = "digits"

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        self.likelihood: RowLikelihood | None = None  # images: a Bernoulli per pixel
        self.conditions: Conditions | None = None
        if info.modality == "table":
            encoding = info.meta["encoding"]
            self.conditions = Conditions(encoding)
            encoder, decoder = self._mlp_nets(tabular.width(encoding), self.conditions.width)
            self.likelihood = RowLikelihood(tabular.spans(encoding))
        else:
            c, h, w = info.meta["channels"], info.meta["height"], info.meta["width"]
            if use_conv(options.arch, h, w):
                encoder, decoder = _conv_nets(c, h, w, max(options.hidden // 8, 8),
                                              options.latent_dim)
            else:
                encoder, decoder = self._mlp_nets(c * h * w)
                encoder = nn.Sequential(nn.Flatten(), encoder)
                decoder = nn.Sequential(decoder, nn.Unflatten(1, (c, h, w)))
        nets = {"encoder": encoder, "decoder": decoder}
        self.net = nn.ModuleDict(nets | ({"likelihood": self.likelihood} if self.likelihood
                                         else {})).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=options.lr)

    def _mlp_nets(self, features: int, conditions: int = 0) -> tuple[nn.Module, nn.Module]:
        o = self.options
        return (mlp([features + conditions, o.hidden, o.hidden, 2 * o.latent_dim]),
                mlp([o.latent_dim + conditions, o.hidden, o.hidden, features]))

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def _losses(self, x: torch.Tensor, generator: torch.Generator | None = None,
                eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample reconstruction NLL and KL, both [B], in nats."""
        if self.conditions is not None:  # tables: rows drawn with their conditions
            cond, rows = self.conditions.training(x, len(x), generator)  # (B, C), (B,)
            x = x[rows]
            mu, logvar = self.net["encoder"](torch.cat([x, cond], 1)).chunk(2, dim=1)
            z, kl = ops.reparameterize_kl(mu, logvar, eps=eps)  # (B, latent), (B,)
            out = self.net["decoder"](torch.cat([z, cond], 1))  # (B, D) row parameters
            return self.likelihood.nll(out, x), kl
        mu, logvar = self.net["encoder"](x).chunk(2, dim=1)  # (B, latent) each
        z, kl = ops.reparameterize_kl(mu, logvar, eps=eps)  # (B, latent), (B,)
        out = self.net["decoder"](z)  # (B, C, H, W) pixel logits
        rec = F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(1)
        return rec, kl

    def train_step(self, batch: Batch) -> dict[str, float]:
        self.net.train()
        # eps from Batch.randn: each sample gets the same noise whatever the number of
        # processes (the kernel's own Philox stream is keyed per call, not per sample)
        rec, kl = self._losses(batch.x, eps=batch.randn(self.options.latent_dim))
        loss = (rec + self.options.beta * kl).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "rec": rec.mean().item(), "kl": kl.mean().item()}

    def val_loss(self, batch: Batch) -> float:
        self.net.eval()  # conditions from their own seeded stream: the same every epoch
        rec, kl = self._losses(batch.x, torch.Generator(self.device).manual_seed(0))
        return (rec + kl).mean().item()  # the negative ELBO, whatever beta trained with

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator, labels=None,
               **settings) -> torch.Tensor:
        """Pixel means in [0, 1], or encoded table rows: conditions drawn by the data's category
        frequencies, or all on `where="column=value"` (plugkit sample --where)."""
        self.net.eval()
        z = torch.randn(n, self.options.latent_dim, generator=generator, device=self.device)
        if self.conditions is None:
            return torch.sigmoid(self.net["decoder"](z))  # (n, C, H, W)
        where = settings.get("where")
        where = None if where is None else tabular.parse_where(self.info.meta["encoding"], where)
        cond = self.conditions.sampling(n, generator, self.device, where)  # (n, C)
        out = self.net["decoder"](torch.cat([z, cond], 1))
        rows = self.likelihood.sample(out, generator)  # (n, D) encoded rows
        return self.conditions.impose(rows, cond)
