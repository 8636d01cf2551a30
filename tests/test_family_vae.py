"""The built-in VAE through the shared conformance suite (MLP and conv networks)."""

import torch
from helpers import table_batch, table_info
from plugkit_families.vae import VAE

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
