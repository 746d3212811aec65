"""vaekit.evaluation.bound: the importance-weighted bound per image, resumable and recorded on
disk."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

import vaekit.evaluation.bound as ev
from vaekit import VAE
from vaekit.config import build_model_config
from vaekit.losses import iw_bound, iw_log_weights


@pytest.fixture(scope="module")
def model_x():
    torch.manual_seed(0)
    cfg = build_model_config(dict(likelihood="bernoulli", latent_dim=3, channels=(4, 8)))
    model = VAE(cfg).eval()
    x = (torch.rand(23, 1, 28, 28) < 0.3).to(torch.uint8) * 255  # binarized, as modelled
    return model, x


def test_blocks_are_seeded_by_position_so_any_subset_recomputes_the_same(model_x):
    model, x = model_x
    full = ev.iw_log_px(model, x, K=7, chunk=3, batch_size=12, seed=5)  # blocks of 4 images
    assert full.shape == (23,) and full.dtype == torch.float64 and not full.isnan().any()
    done = full.clone()
    done[4:8] = math.nan  # the second block left to do; the others marked as done
    done[16:20] = 123.0
    part = ev.iw_log_px(model, x, K=7, chunk=3, batch_size=12, seed=5, done=done)
    assert torch.equal(part[4:8], full[4:8])  # recomputed alone: the same numbers
    assert (part[16:20] == 123.0).all()  # done blocks are not recomputed
    assert torch.equal(done[4:8].isnan(), torch.ones(4, dtype=torch.bool))  # input untouched
    # the chunk size changes nothing (up to the convolutions' rounding); the seed does
    other_chunk = ev.iw_log_px(model, x, K=7, chunk=7, batch_size=28, seed=5)
    assert torch.allclose(other_chunk, full, rtol=0, atol=1e-4)
    other_seed = ev.iw_log_px(model, x, K=7, chunk=3, batch_size=12, seed=6)
    assert (other_seed - full).abs().min() > 1e-6  # every image's noise differs
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        ev.iw_log_px(model, x, K=7, seed=-1)


def test_per_image_bound_is_the_losses_estimator_on_each_block(model_x):
    model, x = model_x
    out = ev.iw_log_px(model, x[:10], K=9, chunk=9, batch_size=45, seed=2)  # two blocks of 5
    for start in (0, 5):
        g = torch.Generator().manual_seed(2 * 10 + start)  # (seed, first index) -> its noise
        xb = ev.to_float(x[start : start + 5])
        with torch.no_grad():
            log_w = iw_log_weights(xb, model.encode, model.log_px, 9, 9, g)  # (9, 5)
        assert torch.allclose(out[start : start + 5], iw_bound(log_w).double())


@pytest.mark.parametrize("save_every", [0, 1e9])  # saved after every block; only when stopped
def test_saved_bound_survives_a_crash_and_a_rerun_computes_nothing(
    model_x, tmp_path, monkeypatch, save_every
):
    model, x = model_x
    kw = dict(K=6, chunk=2, batch_size=10, seed=0)  # blocks of 5 images: 5 blocks
    want = ev.iw_log_px(model, x, **kw)
    calls = []
    real = model.log_weights

    def crashing(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # stopped during the third block
        return real(*a, **k)

    logs = []
    monkeypatch.setattr(model, "log_weights", crashing)
    with pytest.raises(KeyboardInterrupt):
        ev.iw_log_px_saved(
            model, x, stem=tmp_path / "last", save_every=save_every, log=logs.append, **kw
        )
    (record,) = tmp_path.glob("last.iw6-*.json")
    state = json.loads(record.read_text())
    assert state["key"]["K"] == 6 and state["key"]["num_images"] == 23
    assert sum(v is not None for v in state["log_px"]) == 10  # two blocks were saved
    assert state["seconds"] >= 0

    calls.clear()
    monkeypatch.setattr(model, "log_weights", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    got, info = ev.iw_log_px_saved(model, x, stem=tmp_path / "last", log=logs.append, **kw)
    assert torch.equal(got, want) and len(calls) == 3  # only the three missing blocks
    assert info["record"] == str(record) and info["seconds"] >= state["seconds"]
    assert any("resuming" in m and "10/23" in m for m in logs)
    again, _ = ev.iw_log_px_saved(model, x, stem=tmp_path / "last", log=logs.append, **kw)
    assert torch.equal(again, want) and len(calls) == 3  # complete: nothing recomputed
    assert logs[-1] == f"iw bound: read from {record}"


def test_a_saved_bound_is_only_reused_for_the_same_model_data_and_settings(model_x, tmp_path):
    model, x = model_x
    kw = dict(K=4, chunk=4, batch_size=8, log=lambda m: None)
    _, a = ev.iw_log_px_saved(model, x, stem=tmp_path / "m", **kw)
    _, b = ev.iw_log_px_saved(model, x[:20], stem=tmp_path / "m", **kw)  # other data
    _, c = ev.iw_log_px_saved(model, x, stem=tmp_path / "m", seed=1, **kw)  # other noise
    other = VAE(model.cfg).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)  # other weights
    _, d = ev.iw_log_px_saved(other, x, stem=tmp_path / "m", **kw)
    assert len({a["record"], b["record"], c["record"], d["record"]}) == 4


@dataclasses.dataclass
class Before:
    a: int = 1
    net: object = dataclasses.field(default_factory=lambda: After(b=2))


@dataclasses.dataclass
class After:  # Before with an option added at a default that keeps the old behaviour
    a: int = 1
    b: int = 0
    c: tuple = (1, 2)


def test_a_config_is_fingerprinted_by_what_differs_from_its_defaults(model_x):
    assert ev.changed_fields(Before(a=3)) == {"a": 3, "net": {"class": "After", "b": 2}}
    assert ev.changed_fields(After(a=3)) == ev.changed_fields(After(a=3, c=(1, 2))) == {"a": 3}
    assert ev.changed_fields(After(c=(2, 1))) == {"c": (2, 1)}
    model, x = model_x
    same = VAE(dataclasses.replace(model.cfg)).eval()
    same.load_state_dict(model.state_dict())
    other = VAE(dataclasses.replace(model.cfg, std=0.25)).eval()  # same weights, other inputs
    other.load_state_dict(model.state_dict())
    assert ev.fingerprint(same, x) == ev.fingerprint(model, x) != ev.fingerprint(other, x)


def test_unreadable_or_unwritable_progress_warns_and_still_computes(model_x, tmp_path):
    model, x = model_x
    kw = dict(K=3, chunk=3, batch_size=9)
    want = ev.iw_log_px(model, x, **kw)
    _, info = ev.iw_log_px_saved(model, x, stem=tmp_path / "m", log=lambda m: None, **kw)
    record = Path(info["record"])
    record.write_text('{"key": ')  # torn by hand
    logs = []
    got, _ = ev.iw_log_px_saved(model, x, stem=tmp_path / "m", log=logs.append, **kw)
    assert torch.equal(got, want) and any("unreadable" in m for m in logs)
    assert json.loads(record.read_text())["log_px"] == want.tolist()  # rewritten
    logs.clear()
    stem = tmp_path / "no" / "such" / "dir" / "m"
    got, _ = ev.iw_log_px_saved(model, x, stem=stem, log=logs.append, **kw)
    assert torch.equal(got, want) and sum("cannot save" in m for m in logs) == 1


def test_a_non_finite_bound_is_an_error_not_a_number(model_x, monkeypatch):
    model, x = model_x
    monkeypatch.setattr(model, "log_px", lambda x, z: torch.full((len(x),), math.nan))
    with pytest.raises(ValueError, match="not finite for test images 0..3"):
        ev.iw_log_px(model, x, K=2, chunk=2, batch_size=8)


def test_evaluate_says_what_it_is_doing_on_stderr_and_keeps_json_clean(tiny_run, capsys):
    from vaekit.cli import main

    assert main(["evaluate", str(tiny_run), "--limit", "300", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "probe_accuracy" in json.loads(out)  # stdout: the JSON alone
    stages = [line for line in err.splitlines() if line.startswith("evaluate: ")]
    assert any("loss and ELBO of 300 test images" in line for line in stages), err
    probe = [line for line in stages if "linear probe" in line]
    assert "encoding 300 training images" in probe[0] and "fitting" in probe[1]
