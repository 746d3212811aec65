import shutil

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
    z = torch.randn(5, a.top_dim)
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(a.decode(z), b.decode(z))
    assert all(torch.equal(u, v) for u, v in zip(a.encode(x), b.encode(x), strict=True))


def test_onnx_decoder_is_one_file_that_runs_alone_in_onnxruntime(tiny_run, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "export" / "decoder.onnx"
    out.parent.mkdir()
    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    # self-contained: no decoder.onnx.data (issue #19) and no temp file left beside it
    assert sorted(p.name for p in out.parent.iterdir()) == ["decoder.onnx"]
    # the one file named is all a user copies; it must run on its own elsewhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(out, elsewhere)
    session = ort.InferenceSession(str(elsewhere / "decoder.onnx"))
    model = vaekit.load(tiny_run)
    for n in (1, 9):  # the batch size is dynamic
        z = torch.randn(n, model.top_dim)
        got = session.run(None, {"z": z.numpy()})[0]
        assert got.shape == (n, 1, 28, 28)
        np.testing.assert_allclose(got, model.decode(z).detach().numpy(), atol=1e-5)


def test_onnx_too_large_for_one_file_names_both_files(tiny_run, tmp_path, monkeypatch, capsys):
    ort = pytest.importorskip("onnxruntime")
    # torch saves weights beside the graph past this size (under protobuf's 2 GB limit);
    # lowering it stands in for a model that big
    onnx_program = pytest.importorskip("torch.onnx._internal.exporter._onnx_program")
    monkeypatch.setattr(onnx_program, "_LARGE_MODEL_THRESHOLD", 0)
    out = tmp_path / "export" / "decoder.onnx"
    out.parent.mkdir()
    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = out.with_name("decoder.onnx.data")
    assert sorted(p.name for p in out.parent.iterdir()) == ["decoder.onnx", "decoder.onnx.data"]
    assert f"wrote {data}" in printed and f"wrote {out}" in printed
    assert "both" in printed  # says the two files go together
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(out, elsewhere)
    shutil.copy(data, elsewhere)
    session = ort.InferenceSession(str(elsewhere / "decoder.onnx"))
    model = vaekit.load(tiny_run)
    z = torch.randn(3, model.top_dim)
    got = session.run(None, {"z": z.numpy()})[0]
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


def test_onnx_export_is_quiet(tiny_run, tmp_path, capfd):
    """torch's exporter notes on every export that torchvision's ops are skipped, and warns of
    its own deprecated pytree constructor: neither is about the model, so neither shows."""
    import logging
    import warnings

    from vaekit.formats.export import ONNX_REGISTRY_LOGGER

    pytest.importorskip("onnxscript")
    seen: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger(ONNX_REGISTRY_LOGGER)
    logger.addHandler(handler)
    out = tmp_path / "decoder.onnx"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    finally:
        logger.removeHandler(handler)
    assert seen == [] and [str(w.message) for w in caught] == []
    assert capfd.readouterr().err == ""


def test_only_the_exporters_known_notes_are_silenced():
    import logging
    import warnings

    from vaekit.formats.export import ONNX_REGISTRY_LOGGER, quiet_onnx_export

    seen: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger(ONNX_REGISTRY_LOGGER)
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_onnx_export():
                leafspec = "`isinstance(treespec, LeafSpec)` is deprecated, use"
                warnings.warn(leafspec, FutureWarning, stacklevel=1)
                warnings.warn("another deprecation", FutureWarning, stacklevel=1)
                logger.warning("torchvision is not installed. Skipping torchvision::nms")
                logger.warning("another note")
    finally:
        logger.removeHandler(handler)
    assert [str(w.message) for w in caught] == ["another deprecation"] and seen == ["another note"]


def test_a_safetensors_export_is_a_run_for_evaluate_and_sample(tiny_run, tmp_path, capsys):
    """The file alone (the weights a record ships with) gives the run's own evaluation, its
    importance-weighted bound included, and its samples."""
    path = vaekit.export(tiny_run, format="safetensors", out=tmp_path / "m.safetensors")
    got = vaekit.evaluate(path, limit=40, iw_samples=5, probe=False)
    want = vaekit.evaluate(tiny_run, limit=40, iw_samples=5, probe=False)
    for key in ("dataset", "epoch", "step", "test_loss", "elbo", "nll_iw", "nll_iw_sem"):
        assert got[key] == want[key], key
    np.testing.assert_array_equal(
        vaekit.sample(path, n=4, seed=3), vaekit.sample(tiny_run, n=4, seed=3)
    )


def test_a_safetensors_file_without_the_record_evaluates_only_with_a_clear_error(
    tiny_run, tmp_path, capsys
):
    from vaekit.formats.export import save_safetensors

    path = save_safetensors(vaekit.load(tiny_run), tmp_path / "bare.safetensors")  # no record
    assert main(["evaluate", str(path), "--limit", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("has no dataset (a model without its run's record): give its run "
                        "directory, or data") and len(err.splitlines()) == 1  # fmt: skip
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a readable safetensors file" in err and len(err.splitlines()) == 1
