"""Distances between two sets of images, given their features (N, D) from one network.

- FID (Heusel et al. 2017): the Frechet distance between Gaussians fit to the two sets;
- KID (Binkowski et al. 2018): the unbiased squared MMD with a cubic polynomial kernel, averaged
  over random subsets (unbiased: ~0 for two draws of one distribution, at any set size);
- precision and recall (Kynkaenniemi et al. 2019): the share of generated samples that fall in
  the real data's k-NN manifold (fidelity), and of real images in the generated one (coverage
  of modes);
- density and coverage (Naeem et al. 2020): how many real k-NN balls a sample falls in, scaled
  to 1 for samples distributed as the data; the share of real balls holding any sample.

FID and KID are torchmetrics' (extra vaekit[metrics]), fed the features through an identity
module, so each network runs once per image however many metrics are asked for. The k-NN
metrics, which torchmetrics lacks, are written here (tests check them against scikit-learn's
neighbours). Everything is computed in float64 on the CPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

PR_K, DC_K = 3, 5  # neighbours: Kynkaenniemi et al.'s k for precision/recall, Naeem et al.'s
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # torchmetrics' (and Binkowski et al.'s) defaults
CHUNK = 1024  # rows of a distance matrix held at once: 1024 x N float64


def torchmetrics_image():
    """torchmetrics' FID and KID classes, or a one-line ImportError naming the extra."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError:
        raise ImportError("FID and KID need torchmetrics: pip install 'vaekit[metrics]'") from None
    return FrechetInceptionDistance, KernelInceptionDistance


class Given(nn.Module):
    """The feature module torchmetrics calls, for features computed beforehand: the identity on
    (N, D) tensors (num_features tells torchmetrics D without a dummy image)."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f


def frechet_distance(f_real: torch.Tensor, f_fake: torch.Tensor) -> float:
    """FID between feature sets (N, D) and (M, D): |mu_r - mu_f|^2 + Tr(S_r + S_f -
    2 (S_r S_f)^(1/2)), with unbiased covariances (N, M >= 2)."""
    FID, _ = torchmetrics_image()
    fid = FID(feature=Given(f_real.shape[1]), sync_on_compute=False)  # rank 0 alone, no DDP sync
    fid.update(f_real.double(), real=True)
    fid.update(f_fake.double(), real=False)
    return float(fid.compute())


def kernel_distance(
    f_real: torch.Tensor,
    f_fake: torch.Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between feature sets (N, D) and (M, D): (mean, std) over `subsets` random subsets of
    min(subset_size, N, M) of each, drawn from a generator seeded with seed (the global RNG is
    left as it was); one subset when that is all of both sets (every draw would be the same)."""
    _, KID = torchmetrics_image()
    size = min(subset_size, len(f_real), len(f_fake))
    if size == len(f_real) == len(f_fake):
        subsets = 1
    with warnings.catch_warnings():  # "will save all extracted features": they are given
        warnings.simplefilter("ignore", UserWarning)
        kid = KID(feature=Given(f_real.shape[1]), subsets=subsets, subset_size=size,
                  sync_on_compute=False)  # fmt: skip
    kid.update(f_real.double(), real=True)
    kid.update(f_fake.double(), real=False)
    with torch.random.fork_rng():  # its subsets come from torch.randperm
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return float(mean), float(std)


def distances(a: torch.Tensor, b: torch.Tensor):
    """Euclidean distances of a (N, D) to b (M, D), CHUNK rows at a time: yields (start,
    (rows, M) float64)."""
    a, b = a.double(), b.double()
    for i in range(0, len(a), CHUNK):
        yield i, torch.cdist(a[i : i + CHUNK], b)


def knn_radii(f: torch.Tensor, ks: tuple[int, ...] = (PR_K, DC_K)) -> torch.Tensor:
    """Each point's distance to its k-th nearest other point of the set f (N, D), for each k
    of ks: (N, len(ks)) float64."""
    if len(f) <= max(ks):
        raise ValueError(
            f"{max(ks)} nearest neighbours need more than {max(ks)} points, got {len(f)}"
        )
    out = torch.empty(len(f), len(ks), dtype=torch.float64)
    for i, d in distances(f, f):
        nearest = d.topk(max(ks) + 1, dim=1, largest=False).values  # column 0: the point itself
        out[i : i + len(d)] = nearest[:, list(ks)]
    return out


def neighbours(
    f_real: torch.Tensor,
    f_fake: torch.Tensor,
    real_radii: torch.Tensor | None = None,
    pr_k: int = PR_K,
    dc_k: int = DC_K,
) -> dict:
    """Precision and recall (Kynkaenniemi et al. 2019) with pr_k neighbours, density and
    coverage (Naeem et al. 2020) with dc_k, between real features (N, D) and fake ones (M, D):

    - precision: the share of fake points inside some real point's k-NN ball;
    - recall: the share of real points inside some fake point's k-NN ball;
    - density: the real balls holding each fake point, averaged, over k (about 1 when the sets
      are alike, more where samples crowd);
    - coverage: the share of real balls holding at least one fake point.

    A ball holds the points at distances <= its radius. real_radii: knn_radii(f_real, (pr_k,
    dc_k)), when computed already (the same reference against several sets). One pass over the
    real-fake distances serves all four."""
    r_real = knn_radii(f_real, (pr_k, dc_k)) if real_radii is None else real_radii  # (N, 2)
    r_fake = knn_radii(f_fake, (pr_k,))[:, 0]  # (M,)
    in_real = torch.zeros(len(f_fake), dtype=torch.bool)  # fake point inside a real pr_k ball
    density = torch.zeros(len(f_fake), dtype=torch.float64)  # real dc_k balls holding it
    recalled = torch.empty(len(f_real), dtype=torch.bool)
    covered = torch.empty(len(f_real), dtype=torch.bool)
    for i, d in distances(f_real, f_fake):  # d: (rows of real, M)
        r = r_real[i : i + len(d)]
        in_real |= (d <= r[:, :1]).any(0)
        density += (d <= r[:, 1:]).sum(0)
        recalled[i : i + len(d)] = (d <= r_fake).any(1)
        covered[i : i + len(d)] = d.min(1).values <= r[:, 1]
    return {
        "precision": in_real.double().mean().item(),
        "recall": recalled.double().mean().item(),
        "density": (density.mean() / dc_k).item(),
        "coverage": covered.double().mean().item(),
    }


def kid_entries(kid: float, kid_std: float) -> dict:
    """kernel_distance's (mean, std over subsets) as record entries."""
    return {"kid": kid, "kid_std": kid_std}


# The metric registry: name -> a function of (real features (N, D), generated ones (M, D), seed,
# real_radii) giving its record entries. A new metric is one entry here (and one in PRINTED to
# show it in `vaekit metrics`' summary line); compare() computes every entry.
METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor, int, torch.Tensor | None], dict]] = {
    "fid": lambda r, f, seed, radii: {"fid": frechet_distance(r, f)},
    "kid": lambda r, f, seed, radii: kid_entries(*kernel_distance(r, f, seed=seed)),
    "neighbours": lambda r, f, seed, radii: neighbours(r, f, radii),  # precision ... coverage
}
# record key -> (label, format) in the summary line of `vaekit metrics`, in this order
PRINTED = {
    "fid": ("FID", ".3f"),
    "kid": ("KID", ".5f"),
    "precision": ("precision", ".3f"),
    "recall": ("recall", ".3f"),
    "density": ("density", ".3f"),
    "coverage": ("coverage", ".3f"),
}


def compare(
    f_real: torch.Tensor,
    f_fake: torch.Tensor,
    seed: int = 0,
    real_radii: torch.Tensor | None = None,
) -> dict:
    """Every metric of the registry (METRICS) between real features (N, D) and generated ones
    (M, D); seed: KID's subsets'; real_radii: as for neighbours."""
    out = {}
    for metric in METRICS.values():
        out.update(metric(f_real, f_fake, seed, real_radii))
    return {**out, "num_real": len(f_real), "num_fake": len(f_fake)}
