"""The diffusion family's training options and sampler settings."""

from __future__ import annotations

from dataclasses import dataclass

from plugkit.families import image_nets
from plugkit.families.unet import GROUPS
from plugkit.options import option


@dataclass
class Options:
    timesteps: int = option(100, "diffusion steps T, in training and in sampling", min=2,
                            max=4000)
    hidden: int = option(256, "tables, sequences: width of the denoiser", min=8)
    layers: int = option(3, "tables, sequences: hidden layers of the denoiser", min=1, max=16)
    dropout: float = option(0.0, "dropout in the denoiser", min=0.0, max=0.9)
    lr: float = option(1e-3, "AdamW learning rate", min=0.0, max=1.0)
    weight_decay: float = option(1e-5, "AdamW weight decay", min=0.0)
    channels: int = option(32, "images: the UNet's channels at full resolution (twice that "
                           f"at 1/2 and 1/4), a multiple of {GROUPS}", min=GROUPS, max=1024)
    cond_drop: float = option(0.1, "images with labels: how often training drops the label, "
                              "teaching the unconditional model that guidance needs", min=0.0,
                              max=1.0)
    conditional: bool = image_nets.conditional_option()
    ema: float = option(0.999, "decay of the moving average of the denoiser's weights that "
                        "samples (0: the trained weights themselves)", min=0.0, max=0.9999)

    def __post_init__(self) -> None:
        if self.channels % GROUPS:
            raise ValueError(f"channels must be a multiple of {GROUPS} (GroupNorm's groups), "
                             f"got {self.channels}")


@dataclass
class Settings:
    where: str = option("", "tables: every row holds VALUE in the categorical COLUMN "
                        "(COLUMN=VALUE), drawn so by the model, not filtered")
    steps: int = option(0, "denoising steps when sampling, evenly spaced over the T trained "
                        "(fewer: faster); 0: all T", min=0)
    guidance: float = option(0.0, "images drawn for labels: classifier-free guidance weight w, "
                             "eps = (1 + w) eps(x, label) - w eps(x); 0: none (one net "
                             "evaluation per step, not two)", min=0.0)
