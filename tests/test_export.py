import numpy as np
import pytest
import torch

import vaekit
from vaekit.cli import main


def test_safetensors_round_trip_gives_identical_outputs(tiny_run, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["export", str(tiny_run), "--format", "safetensors", "--out", str(out)]) == 0
    a, b = vaekit.load(tiny_run), vaekit.load(out)
    assert a.cfg == b.cfg
    z = torch.randn(5, a.cfg.latent_dim)
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(a.decode(z), b.decode(z))
    assert all(torch.equal(u, v) for u, v in zip(a.encode(x), b.encode(x), strict=True))


def test_onnx_decoder_matches_in_onnxruntime(tiny_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    assert main(["export", str(tiny_run), "--format", "onnx"]) == 0
    session = ort.InferenceSession(str(tiny_run / "decoder.onnx"))
    model = vaekit.load(tiny_run)
    for n in (1, 9):  # the batch size is dynamic
        z = torch.randn(n, model.cfg.latent_dim)
        got = session.run(None, {"z": z.numpy()})[0]
        assert got.shape == (n, 1, 28, 28)
        np.testing.assert_allclose(got, model.decode(z).detach().numpy(), atol=1e-5)


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--format", "onnx"]) == 2
    assert "no such run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path), "--format", "pickle"])
    assert e.value.code == 2
    bad = tmp_path / "x.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(bad))
    with pytest.raises(ValueError, match="no model_config in its metadata"):
        vaekit.load(bad)
