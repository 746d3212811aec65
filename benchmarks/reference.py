"""The seed's training pipeline, the baseline vaekit is measured against (issue 5).

Written from the description in ../shared/seed/SEED.md, in the seed's style on purpose: a
Dataset that turns each image into a PIL image, then a float tensor, then normalises it; a
shuffled DataLoader (batch 64, no workers); the seed network in eager fp32; AdamW 1e-3; the
loss summed over the batch (squared error in z-scored units + KL). Uses only torch, numpy and
Pillow (no torchvision: the two pieces the seed took from it are rewritten here).

    python benchmarks/reference.py --epochs 20 --out runs/reference   # the seed's 20 epochs
    python benchmarks/reference.py --limit 9600 --epochs 1 --no-eval    # a timing run
Prints one JSON line per epoch: train seconds, images/s, test loss per image.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

MEAN, STD = 0.1307, 0.3081


def read_idx(path: Path) -> np.ndarray:
    """An IDX .gz file (MNIST's format) as a uint8 array (stand-in for torchvision's reader)."""
    raw = gzip.open(path, "rb").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


class MNIST(torch.utils.data.Dataset):
    """Per item: uint8 array -> PIL image -> float tensor in [0, 1] -> z-scored (ToTensor,
    Normalize), as the seed's torchvision pipeline does."""

    def __init__(self, root: Path, train: bool, limit: int = 0):
        prefix = "train" if train else "t10k"
        self.images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        self.labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        if limit:
            self.images, self.labels = self.images[:limit], self.labels[:limit]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i], mode="L")
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).float().div(255).unsqueeze(0)
        return (x - MEAN) / STD, int(self.labels[i])


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding="same", bias=False)
        self.n1 = nn.InstanceNorm2d(c, affine=True)
        self.c2 = nn.Conv2d(c, c, 3, padding="same", bias=False)
        self.n2 = nn.InstanceNorm2d(c, affine=True)

    def forward(self, x):
        h = self.n2(self.c2(F.relu(self.n1(self.c1(x)))))
        return F.relu(F.max_pool2d(h + x, 2))


def tblock(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(a, b, 3, bias=False), nn.BatchNorm2d(b), nn.ReLU())


class SeedVAE(nn.Module):
    """SEED.md's network: 387,554 parameters, 20 latent dims."""

    def __init__(self, d: int = 20):
        super().__init__()
        self.d = d
        self.enc = nn.Sequential(
            nn.Conv2d(1, 64, 4, padding="same", bias=False),
            nn.InstanceNorm2d(64, affine=True),
            nn.ReLU(),
            ResBlock(64),
            ResBlock(64),
            ResBlock(64),
            nn.Conv2d(64, 2 * d, 3, bias=False),
        )
        self.dec = nn.Sequential(
            tblock(d, 64),
            nn.Upsample(scale_factor=2),
            tblock(64, 64),
            tblock(64, 64),
            tblock(64, 64),
            nn.Upsample(scale_factor=2),
            tblock(64, 32),
            nn.ConvTranspose2d(32, 1, 3, bias=False),
            nn.BatchNorm2d(1),
        )

    def forward(self, x):
        h = self.enc(x).flatten(1)
        mu, logvar = h[:, : self.d], h[:, self.d :]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.dec(z[:, :, None, None]), mu, logvar


def loss_fn(x_hat, x, mu, logvar):
    """Summed over the batch: squared error (z-scored units) + KL(q(z|x) || N(0, I))."""
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return F.mse_loss(x_hat, x, reduction="sum") + kl


def main() -> None:
    ap = argparse.ArgumentParser(description="the seed's training pipeline (baseline)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("VAEKIT_DATA", "data")))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--limit", type=int, default=0, help="first N training images (0 = all)")
    ap.add_argument("--no-eval", action="store_true", help="skip the test pass after each epoch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, help="also append the JSON lines to OUT/metrics.jsonl")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    root = args.data / "mnist"
    train = torch.utils.data.DataLoader(MNIST(root, True, args.limit), batch_size=64, shuffle=True)
    test = torch.utils.data.DataLoader(MNIST(root, False), batch_size=64)
    model = SeedVAE().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0, total = time.perf_counter(), 0.0
        for x, _ in train:
            x = x.to(device)
            x_hat, mu, logvar = model(x)
            loss = loss_fn(x_hat, x, mu, logvar)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        n = len(train.dataset)
        row = {"epoch": epoch, "train_loss": total / n, "epoch_seconds": seconds}
        row["images_per_second"] = n / seconds
        if not args.no_eval:
            model.eval()
            s = 0.0
            with torch.no_grad():
                for x, _ in test:
                    x = x.to(device)
                    x_hat, mu, logvar = model(x)
                    s += loss_fn(x_hat, x, mu, logvar).item()
            row["test_loss"] = s / len(test.dataset)
        row["wall_seconds"] = time.perf_counter() - start
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
