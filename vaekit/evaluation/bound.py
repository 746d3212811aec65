"""Test-set evaluation: fixed, unshuffled data and a fixed noise seed, so numbers repeat.

Every function takes uint8 images as the model sees them (likelihood.prepare_eval: binarized once
for a "bernoulli" model). Likelihoods are in nats of the 8-bit (or binary) data.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import checkpoint
from ..likelihoods import to_float
from ..losses import iw_bound, kl_normal
from ..models import LatentModel
from ..models.base import with_labels
from ..priors.base import Prior


@torch.inference_mode()
def evaluate(
    model: LatentModel,
    x: torch.Tensor,
    batch_size: int = 500,
    seed: int = 0,
    y: torch.Tensor | None = None,
) -> dict:
    """Mean per-image loss, recon and KL over uint8 images x (N, C, H, W) (given their labels y
    (N,) for a conditional model), the ELBO, KL per dim of the top group (None where the
    model's KL is a Monte Carlo estimate of the whole group) and per group.

    recon is in the likelihood's training units (for "gaussian", the seed's); test_loss = recon
    + KL (the true -ELBO in those units, whatever the training objective); elbo = -(-log P(x|z)
    + KL) in nats of the 8-bit data, a lower bound on log P(x). A model without a KL (ae) gets
    kl, elbo and the KL lists as None. A model's auxiliary loss terms (forward's "aux", e.g. a
    VQ-VAE's commitment loss) come as "aux": {name: mean per image} and are part of test_loss
    (the key is absent for a model without them). Runs in eval mode with z sampled from q(z|x)
    under a fixed seed; restores the model's mode and the global RNG.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # recon, -log P(x|z)
    kl_groups = torch.zeros(len(model.latent_shapes), dtype=torch.float64, device=device)
    kl_dims = torch.zeros(model.top_dim, dtype=torch.float64, device=device)
    aux: dict[str, torch.Tensor] = {}  # name -> summed over the images
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(x), batch_size):
            xb = to_float(x[i : i + batch_size].to(device, non_blocking=True))
            out = model(xb, **labels_of(y, i, i + batch_size, device))
            recon = out["recon"]
            totals += torch.stack(
                [recon.sum(), model.likelihood.discrete_nll(recon).sum()]
            ).double()
            for k, v in out.get("aux", {}).items():
                aux[k] = aux.get(k, 0) + v.double().expand(len(xb)).sum()
            if out["kl"]:
                kl_groups += torch.stack([k.flatten(1).sum() for k in out["kl"]]).double()
                top = out["kl"][0].flatten(1)  # (B, D), or (B, 1): a Monte Carlo KL
                kl_dims = kl_dims + top.sum(0).double() if top.shape[1] == model.top_dim else None
    model.train(was_training)
    n = len(x)
    recon, nll_x_z = (totals / n).tolist()
    extra = {"aux": {k: float(v) / n for k, v in aux.items()}} if aux else {}
    aux_loss = sum(extra["aux"].values()) if aux else 0.0
    if not model.has_kl:
        return {"test_loss": recon + aux_loss, "recon": recon, "kl": None, "elbo": None,
                "num_images": n, "kl_per_dim": None, "kl_per_group": None, **extra}  # fmt: skip
    kl = float(kl_groups.sum()) / n
    return {
        **extra,
        "test_loss": recon + kl + aux_loss,
        "recon": recon,
        "kl": kl,
        "elbo": -(nll_x_z + kl),
        "num_images": n,
        "kl_per_dim": None if kl_dims is None else (kl_dims / n).tolist(),
        "kl_per_group": (kl_groups / n).tolist(),
    }


def labels_of(y: torch.Tensor | None, start: int, stop: int, device) -> dict:
    """The keyword arguments giving a model the labels of images start:stop (none: no y)."""
    return with_labels(None if y is None else y[start:stop].to(device))


def iw_block(K: int, chunk: int, batch_size: int) -> int:
    """Images per block of the importance-weighted bound: block images of min(chunk, K) samples
    each go through the decoder at once, at most batch_size samples (or one image's chunk)."""
    return max(1, batch_size // min(chunk, K))


@torch.inference_mode()
def iw_log_px(
    model: LatentModel,
    x: torch.Tensor,
    K: int,
    chunk: int = 50,
    batch_size: int = 250,
    seed: int = 0,
    done: torch.Tensor | None = None,
    on_block: Callable[[torch.Tensor], None] | None = None,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """The importance-weighted bound on log P(x) (Burda et al. 2015) of each uint8 image in x,
    in nats: (N,) float64 on the CPU. A lower bound that rises to log P(x) as K grows.

    Images go in blocks of iw_block(K, chunk, batch_size), so K = 5000 fits in memory. Each
    block's noise comes from a CPU generator seeded by (seed, its first index), so a block's
    value does not depend on which blocks ran before nor on the device: blocks whose entries in
    `done` (N,) are all numbers are kept, the others (NaN) computed, so a resumed run gives the
    numbers of one that never stopped. on_block(values) is called after each block. Raises
    ValueError on a non-finite bound. The model should be in eval mode. y: the images' labels
    (N,), for a conditional model (the bound on log P(x|y)).
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    device = next(model.parameters()).device
    n_img = iw_block(K, chunk, batch_size)
    out = torch.full((len(x),), math.nan, dtype=torch.float64) if done is None else done.clone()
    g = torch.Generator()
    prior = getattr(model, "prior", None)  # a learned prior derives its density once (fixed)
    with prior.fixed() if isinstance(prior, Prior) else nullcontext():
        for i in range(0, len(x), n_img):
            if not out[i : i + n_img].isnan().any():
                continue
            g.manual_seed((seed * len(x) + i) % 2**32)  # a CPU generator keeps 32 bits of seed
            xb = to_float(x[i : i + n_img].to(device))
            log_w = model.log_weights(
                xb, K, g, min(chunk, K), **labels_of(y, i, i + n_img, device)
            )  # (K, b)
            b = iw_bound(log_w).double().cpu()
            if not b.isfinite().all():
                last = i + len(b) - 1
                raise ValueError(f"the IW bound is not finite for test images {i}..{last}")
            out[i : i + n_img] = b
            if on_block is not None:
                on_block(out)
    return out


def changed_fields(cfg) -> dict:
    """A config's fields that differ from their defaults (a nested config: its own, always):
    what a model is, unchanged when vaekit adds an option at a default that keeps the old
    behaviour; a default changed since makes the old value show, so the fingerprint changes."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if is_dataclass(v):
            out[f.name] = {"class": type(v).__name__, **changed_fields(v)}
            continue
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if default is MISSING or v != default:
            out[f.name] = v
    return out


def fingerprint(model: LatentModel, x: torch.Tensor, y: torch.Tensor | None = None) -> str:
    """SHA-256 of a model's config (changed_fields) and weights and of the images x (and labels
    y, if given): what a saved bound is for."""
    h = hashlib.sha256(json.dumps(changed_fields(model.cfg), sort_keys=True).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(x.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if y is not None:
        h.update(y.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def iw_log_px_saved(
    model: LatentModel,
    x: torch.Tensor,
    K: int,
    *,
    stem: Path,
    chunk: int = 50,
    batch_size: int = 250,
    seed: int = 0,
    save_every: float = 30.0,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    y: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """iw_log_px that keeps its progress in a JSON file and picks up from it, so an evaluation
    of hours survives being stopped: (per-image bounds (N,), {"record": the file, "seconds":
    time spent on the bound over all the runs that built it}).

    The file is named stem + ".iw{K}-{key digest}.json" and holds the key (model, data, K, seed,
    block size) and one value per image, null until done; it is replaced atomically at most
    save_every seconds, when an exception stops the bound (KeyboardInterrupt included) and at
    the end, and stays as the record of the per-image bounds (a rerun with the same key reads
    it and computes nothing). Progress goes to `log` every minute.
    """
    key = {
        "fingerprint": fingerprint(model, x, y),
        "K": K,
        "seed": seed,
        "block": iw_block(K, chunk, batch_size),
        "num_images": len(x),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(f"{stem}.iw{K}-{digest}.json")
    done, spent = read_progress(path, key, len(x), log)
    n_done = 0 if done is None else int((~done.isnan()).sum())
    if n_done == len(x):
        log(f"iw bound: read from {path}")
    elif done is not None:
        log(f"iw bound: resuming from {path} ({n_done:,}/{len(x):,} images done)")
    progress = Progress(path, key, spent, n_done, save_every, log)
    try:
        out = iw_log_px(model, x, K, chunk, batch_size, seed, done, progress.on_block, y)
    except BaseException:  # stopped (a signal, Ctrl-C) or failed: keep the finished blocks
        if progress.latest is not None:
            progress.save(progress.latest)
        raise
    if n_done < len(x):
        progress.save(out)
    return out, {"record": str(path), "seconds": progress.seconds()}


def read_progress(
    path: Path, key: dict, n: int, log: Callable[[str], None]
) -> tuple[torch.Tensor | None, float]:
    """(per-image bounds (n,) float64, NaN where not done, or None; seconds spent) from the
    progress file at path when it holds this key; an unreadable file is a warning."""
    if not path.is_file():
        return None, 0.0
    try:
        state = json.loads(path.read_text())
        if state["key"] == key and len(state["log_px"]) == n:
            values = [math.nan if v is None else float(v) for v in state["log_px"]]
            spent = float(state["seconds"])
            return torch.tensor(values, dtype=torch.float64), spent
    except (ValueError, KeyError, TypeError):
        log(f"warning: {path} is unreadable; starting the bound afresh")
    return None, 0.0


class Progress:
    """The bound's progress file, kept up to date as blocks finish: replaced atomically at
    most every save_every seconds, a progress line to log every minute; a save that fails is
    a warning once, then retried."""

    def __init__(
        self,
        path: Path,
        key: dict,
        spent: float,
        n_done: int,
        save_every: float,
        log: Callable[[str], None],
    ):
        self.path, self.key, self.spent, self.n_done = path, key, spent, n_done
        self.save_every, self.log = save_every, log
        self.t0 = self.last_save = self.last_log = time.monotonic()
        self.failing = False  # the last save failed: say so once, keep trying
        self.latest: torch.Tensor | None = None  # the values after the last finished block

    def seconds(self) -> float:
        """Seconds spent on the bound, over all the runs that built it."""
        return self.spent + time.monotonic() - self.t0

    def save(self, values: torch.Tensor) -> None:
        log_px = [None if math.isnan(v) else v for v in values.tolist()]
        state = {"key": self.key, "seconds": self.seconds(), "log_px": log_px}
        try:
            checkpoint.save_json(state, self.path)
        except OSError as e:
            if not self.failing:
                self.log(
                    f"warning: cannot save the bound's progress to {self.path} ({e}); will retry"
                )
            self.failing = True
        else:
            self.failing = False

    def on_block(self, values: torch.Tensor) -> None:
        """values (N,): the bounds so far, NaN for the images not done yet."""
        self.latest = values
        now = time.monotonic()
        if now - self.last_save >= self.save_every:
            self.save(values)
            self.last_save = now
        n = int((~values.isnan()).sum())
        if now - self.last_log >= 60 and n > self.n_done:
            rate = (n - self.n_done) / (now - self.t0)
            left = (len(values) - n) / rate / 60
            self.log(
                f"iw bound: {n:,}/{len(values):,} images, {rate:.2f} images/s, ~{left:.0f} min left"
            )
            self.last_log = now


@torch.inference_mode()
def posterior(
    model: LatentModel,
    x: torch.Tensor,
    batch_size: int = 1000,
    desc: str | None = None,
    y: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[float] | None]:
    """One encoder pass over uint8 images x: the top group's E_q[z|x] (N, D) on the CPU, and each
    of its dims' average KL(q(z|x) || p(z)) (D,), the dims the model uses most having the
    largest (None for a model without a KL, or whose KL has no closed form per dim). desc:
    show a progress bar (stderr, terminals only) with this label. y: the images' labels (N,),
    for a conditional model."""
    device = next(model.parameters()).device
    mus, kl = [], torch.zeros(model.top_dim, dtype=torch.float64, device=device)
    bar = tqdm(total=len(x), desc=desc, unit="img", file=sys.stderr, leave=False,
               disable=None if desc else True)  # fmt: skip
    for i in range(0, len(x), batch_size):
        xb = to_float(x[i : i + batch_size].to(device))
        mu, logvar = model.encode(xb, **labels_of(y, i, i + batch_size, device))
        if logvar is not None:
            kl += kl_normal(mu, logvar).sum(0).double()
        mus.append(mu.cpu())
        bar.update(len(mu))
    bar.close()
    if not model.has_kl or model.monte_carlo_kl:  # no closed-form KL per dim
        return torch.cat(mus), None
    return torch.cat(mus), (kl / max(len(x), 1)).tolist()


@torch.inference_mode()
def active_units_per_group(
    model: LatentModel,
    x: torch.Tensor,
    batch_size: int = 500,
    threshold: float = 0.01,
    y: torch.Tensor | None = None,
) -> list[int]:
    """Active units of each latent group (Burda et al. 2015): the dims whose posterior mean
    varies over the uint8 images x by more than threshold; lower groups' means are taken along
    the path of posterior means. Variances accumulate in float64, one batch at a time. y: the
    images' labels (N,), for a conditional model."""
    device = next(model.parameters()).device
    s1 = s2 = None
    for i in range(0, len(x), batch_size):
        xb = to_float(x[i : i + batch_size].to(device))
        q = model.posterior(xb, **labels_of(y, i, i + batch_size, device))
        mus = [m.flatten(1).double() for m, _ in q]
        if s1 is None:
            s1 = [m.sum(0) for m in mus]
            s2 = [m.pow(2).sum(0) for m in mus]
        else:
            s1 = [a + m.sum(0) for a, m in zip(s1, mus, strict=True)]
            s2 = [a + m.pow(2).sum(0) for a, m in zip(s2, mus, strict=True)]
    n = max(len(x), 1)
    return [int(((b / n - (a / n).pow(2)) > threshold).sum()) for a, b in zip(s1, s2, strict=True)]


def linear_probe(
    f_train: torch.Tensor,
    y_train: torch.Tensor,
    f_test: torch.Tensor,
    y_test: torch.Tensor,
    l2: float = 1e-4,
    iters: int = 200,
) -> float:
    """Test accuracy of a multinomial logistic regression fit on (f_train (N, D), y_train (N,)).

    Features are standardised with the training set's mean and std; full-batch L-BFGS from zero
    weights on the mean cross-entropy + l2 * |W|^2: convex and deterministic, no seed needed.
    """
    m, s = f_train.mean(0), f_train.std(0).clamp(min=1e-6)
    a, b = ((f_train - m) / s).double(), ((f_test - m) / s).double()  # (N, D), (M, D)
    classes = int(max(y_train.max(), y_test.max())) + 1
    W = torch.zeros(a.shape[1], classes, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, c], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ W + c, y_train) + l2 * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return ((b @ W + c).argmax(1) == y_test).double().mean().item()
