"""Shared fixtures. No test touches the network: downloads are disabled unless a test serves
files itself on 127.0.0.1. Real-data tests need $VAEKIT_DATA/mnist; they skip without it,
except under CI (CI=true), where a missing dataset is an error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Markers from the fixtures a test uses, so they cannot drift from what it needs: a test on real
# MNIST (data_root, or tiny_run above it) is real_data, one driving Chromium is browser.
MARKER_OF_FIXTURE = {"data_root": "real_data", "browser": "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in MARKER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("VAEKIT_OFFLINE", "1")


def _data_root() -> Path | None:
    root = os.environ.get("VAEKIT_DATA")
    if root and (Path(root) / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        return Path(root)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding mnist/ (real IDX files), from $VAEKIT_DATA."""
    root = _data_root()
    if root is None:
        msg = "real MNIST not found: set VAEKIT_DATA to a folder holding mnist/*.gz"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (CI requires it)")
        pytest.skip(msg)
    return root


# A model small enough that a whole CLI run on MNIST takes seconds; fp32 on every CPU (auto
# would choose bf16 on CPUs with AVX-512 BF16, where the tests' tolerances are fp32's).
TINY = ["--channels", "8", "16", "--latent-dim", "4", "--batch-size", "64", "--precision", "fp32"]


@pytest.fixture(scope="session")
def tiny_run(data_root, tmp_path_factory) -> Path:
    """A run dir trained for one epoch on 512 real MNIST images, shared by read-only tests."""
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    args = ["train", "--limit", "512", "--epochs", "1", "--out", str(out), *TINY]
    assert main([*args, "--data-dir", str(data_root)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_cvae_run(data_root, tmp_path_factory) -> Path:
    """A conditional run (preset mnist-cvae, tiny) trained for one epoch on 512 real MNIST
    images with their labels, shared by read-only tests."""
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny-cvae"
    args = ["train", "--preset", "mnist-cvae", "--limit", "512", "--epochs", "1", "--out", str(out)]
    assert main([*args, *TINY, "--data-dir", str(data_root)]) == 0
    return out


# A VQ-VAE small enough for seconds: a 7x7 grid of codes from a codebook of 8, 3-dim codes.
TINY_VQ = ["--family", "vqvae", "--widths", "4", "8", "--res-blocks", "1", "--codebook-size", "8",
           "--code-dim", "3", "--batch-size", "64", "--precision", "fp32"]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_vq_run(data_root, tmp_path_factory) -> Path:
    """A vqvae run dir trained for one epoch on 512 real MNIST images (no prior over its codes),
    shared by read-only tests."""
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny-vq"
    args = ["train", "--limit", "512", "--epochs", "1", "--no-figures", "--out", str(out)]
    assert main([*args, *TINY_VQ, "--data-dir", str(data_root)]) == 0
    return out
