"""Denoising diffusion (Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS 2020) for
tables, sequences and images.

Tables, as TabDDPM does them (Kotelnikov et al., "TabDDPM: Modelling Tabular Data with Diffusion
Models", ICML 2023): Gaussian diffusion on the numeric values and multinomial diffusion on the
categories (Hoogeboom et al., "Argmax Flows and Multinomial Diffusion", NeurIPS 2021), one MLP
denoiser with a timestep embedding for both.

The row is the encoded row every table family sees (plugkit.formats.tabular): its "offset"
spans (a numeric value's offset within its mode) diffuse as Gaussians, its one-hot spans (the
mode of a numeric value, whether it is missing, a category) each as a categorical variable. So
point modes, missing values and categories are all drawn as categories, as TabDDPM draws
categories, and the mode-specific offsets do what TabDDPM's quantile transform does: put every
numeric column on a scale a Gaussian suits.

- forward, at step t of T (cosine schedule, Nichol & Dhariwal, ICML 2021, as TabDDPM):
  offsets x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps; a one-hot span keeps its category with
  probability abar_t, else draws one from its prior: the column's own shares in the encoding
  (`prior=marginal`, D3PM's marginal transition, Austin et al., NeurIPS 2021), so at t = T the
  columns already hold their real shares and the denoiser learns only how they go together;
  or every category alike (`prior=uniform`, TabDDPM's; a missing flag's share is not recorded,
  so it is always uniform). On adult: TV mean 0.014 -> 0.012 (docs/results.md).
- the denoiser reads x_t and t and predicts eps for the offsets and the logits of x_0 for each
  one-hot span; the loss is the mean squared error on eps plus the mean cross-entropy of x_0
  over the spans (whose optimum, like that of TabDDPM's KL, is the true p(x_0 | x_t)).
- sampling runs the T steps back: DDPM's posterior for the offsets, and for each span the exact
  posterior q(x_{t-1} | x_t) under the predicted distribution of x_0 (`categorical_step`).
- `where COLUMN=VALUE` is drawn by the model: the column's span is held at the category's own
  forward process at every step (inpainting, as RePaint's replacement) while the denoiser
  fills in the rest, so the other columns follow the category; no row is rejected.
- samples come from a moving average of the weights (`ema`, as TabDDPM's trainer keeps one):
  on adult after 10 minutes it took TV max from 0.096 to 0.034 (the categories no longer drift
  to each column's commonest value), detection AUC from 0.686 to 0.620 (docs/results.md).
- the average's category logits get an offset each (`calibrate`, tables.Calibration), fitted
  to the rows by the same cross-entropy: softmax of averaged weights is sharper than the
  predictions around them, and drew adult's commonest workclass a point too often.

Sequences (standardized windows [B, T, F]): Gaussian diffusion on every value, the denoiser a
1-D convolutional net over time with the same timestep embedding (`ConvDenoiser`); samples
from the moving average too (co2 after 150 s: marginal KS 0.144 -> 0.036, floor 0.031). A
window is diffused as its level and its shape about it (`level`), with T = 1000 walked in 100
sampling steps closer at low noise, so a trend's windows keep their fine shape (co2: detection
accuracy 0.88 -> 0.59, floor 0.51; sequences.py).

Images ([B, C, H, W], gray or RGB, any size; scaled from [0, 1] to [-1, 1] as DDPM scales
pixels): Gaussian diffusion on every pixel, the denoiser a small UNet (plugkit/families/unet.py).
With labels it is class-conditional with classifier-free guidance (Ho & Salimans,
"Classifier-Free Diffusion Guidance", 2021): training replaces a label by "no label" with
probability `cond_drop`, so one net learns both eps(x_t, label) and eps(x_t), and sampling
follows (1 + w) eps(x_t, label) - w eps(x_t) for the `guidance` weight w. Sampling is DDIM's
deterministic walk (Song et al., "Denoising Diffusion Implicit Models", ICLR 2021, eta = 0:
the initial noise decides the image), over all T steps or `steps` of them, and samples come
from a moving average of the weights (`ema`), as DDPM's do. Measured on digits after 2 minutes
of training on one CPU thread (62 epochs, plugkit eval; real floor: Fréchet distance 0.079,
label accuracy 0.994): the average took the Fréchet distance from 0.51 to 0.15 and detection
accuracy from 0.70 to 0.57; `steps=20` of the 100, a fifth of the denoiser's passes, gave
0.17; `guidance=1` gave label accuracy 0.998 (0.948 without) at a Fréchet distance of 0.29,
hence no guidance by default. Training draws the step t in proportion to Min-SNR-5's weight
(`snr_gamma`; Hang et al., ICCV 2023), so the nearly clean steps, whose noise is easy to
tell and whose gradients pull against the rest, come up rarely: mnist-5k after 15 minutes,
Fréchet distance 0.92 -> 0.55 (docs/results.md).

Every noise of a training step is drawn per row through Batch.randn / Batch.rand (the step t,
eps, the categories' replacement, the dropped labels), so a run on N processes trains what one
process trains and --resume continues exactly. The Gaussian noise of a step is not stored: it
is drawn from a Philox key by plugkit.ops.diffusion_noise and drawn again by diffusion_loss,
keyed by each row's global index, so it too is the same on any number of processes.

The package: options.py (Options, Settings), steps.py (the schedule, the timestep embedding,
the sampler's steps, shared by all), and one strategy per modality (tables.py, sequences.py,
images.py: its denoiser, loss and sampler), which the family below picks by the data.
"""


from __future__ import annotations

import copy

import torch
from torch import nn

from plugkit.families import image_nets
from plugkit.families.diffusion.images import Images
from plugkit.families.diffusion.options import Options, Settings
from plugkit.families.diffusion.sequences import Sequences
from plugkit.families.diffusion.steps import FixedNoise, cosine_schedule
from plugkit.families.diffusion.tables import Tables
from plugkit.family import Batch, DataInfo, Family

__all__ = ["Diffusion", "Options", "Settings"]

_MODALITIES = {"table": Tables, "sequence": Sequences, "image": Images}


class Diffusion(Family):
    name = "diffusion"
    description = "denoising diffusion for tables (TabDDPM), sequences and images (DDIM, CFG)"
    modalities = ("table", "sequence", "image")
    conditional = True  # tables: per category (--where), by inpainting; images: per label
    private = ("table", "sequence")  # DP-SGD: every row its own noise and loss, no layer mixes rows
    Options = Options
    Settings = Settings
    default_dataset = "iris"
    # adult, 10 minutes on one thread: 256 rows a step train twice the rows a second that 64
    # do, and took TV max 0.034 -> 0.025, detection AUC 0.620 -> 0.606 (docs/results.md)
    batch_sizes = {"table": 256}

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        modality = _MODALITIES[info.modality]
        if not options.timesteps:  # settled here, so run.json records the T trained
            options.timesteps = modality.timesteps
        if not options.lr:  # the same: run.json records the rate trained with
            options.lr = modality.lr
        self.data = modality(options, info, device)  # what differs with it
        self.num_classes = self.data.classes
        self.abar = cosine_schedule(options.timesteps).to(device)  # (T + 1,) float64
        self.net = self.data.net().to(device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=options.lr,
                                           weight_decay=options.weight_decay, fused=True)
        # samples come from a moving average of the weights, as DDPM's and TabDDPM's do
        # (digits: Fréchet distance 0.51 without it, 0.15 with it; adult: TV max 0.096 -> 0.034;
        # module docstring)
        self.averaged = (copy.deepcopy(self.net).requires_grad_(False) if options.ema
                         else None)
        if self.averaged is not None:  # see _average_of_an_older_run
            self.averaged.shape_from = self._average_of_an_older_run
        # tables: offsets refitting the average's category logits (option calibrate)
        self.calibration = getattr(self.data, "calibration", None)
        self.calibration_optimizer = (
            torch.optim.SGD(self.calibration.parameters(), lr=self.calibration.lr)
            if self.calibration is not None else None)

    def modules(self) -> dict[str, nn.Module]:
        averaged = {"denoiser_ema": self.averaged} if self.averaged is not None else {}
        calibration = {"calibration": self.calibration} if self.calibration is not None else {}
        return {"denoiser": self.net} | averaged | calibration  # in this order: see below

    def private_parts(self) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
        # the average is post-processing; a private run fits no calibration (tables.py)
        return {"denoiser": self.net}, self.optimizers()

    def _average_of_an_older_run(self, tensors: dict[str, torch.Tensor]) -> None:
        """Tables and sequences kept no average before 2026-11-30 (`ema` was for images),
        so their weight files have none: theirs starts as the weights themselves, loaded just
        before it (checkpoint.load_weights calls this with the file's tensors of the average;
        an older run then samples exactly as it did, and a resumed one averages from there)."""
        if not tensors:
            tensors.update({k: v.clone() for k, v in self.net.state_dict().items()})

    def _sampler(self) -> nn.Module:
        """The weights that sample, and so are validated: the moving average when kept (a
        table's with its calibration)."""
        if self.averaged is None:
            return self.net
        return self.averaged if self.calibration is None else self.data.sampler(self.averaged)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        calibration = ({"calibration": self.calibration_optimizer}
                       if self.calibration_optimizer is not None else {})
        return {"adamw": self.optimizer} | calibration

    def train_step(self, batch: Batch) -> dict[str, float]:
        self.net.train()
        loss = self.data.loss(self.net, self.abar, batch.x, batch.y, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.averaged is not None:
            image_nets.update_average(self.averaged, self.net, self.optimizer,
                                      self.options.ema)
        step = int(self.optimizer.state[next(self.net.parameters())]["step"])
        if self.calibration is not None and step % self.calibration.every == 0:
            self.calibration_optimizer.zero_grad(set_to_none=True)
            self.data.calibration_loss(self.averaged).backward()
            self.calibration_optimizer.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def val_loss(self, batch: Batch) -> float:
        net = self._sampler().eval()  # the same steps and noise every epoch: comparable values
        noise = FixedNoise(len(batch.x), self.device)
        return self.data.loss(net, self.abar, batch.x, batch.y, noise).item()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator, labels=None,
               settings: Settings | None = None) -> torch.Tensor:
        """Encoded rows (n, D), standardized windows (n, T, F) or images (n, C, H, W) in
        [0, 1] (of the labels [n] when conditional), from noise through the T steps back (or
        `steps` of them)."""
        return self.data.sample(self._sampler().eval(), self.abar, n, generator, labels,
                                settings or Settings())
