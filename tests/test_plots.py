import numpy as np
import torch
from PIL import Image

from vaekit.figures.png import make_grid, save_png, side_by_side


def test_grid_geometry_matches_the_seed_figures():
    imgs = torch.rand(64, 1, 28, 28)
    g = make_grid(imgs, 8)  # 8x8 with 2 px padding
    assert g.shape == (8 * 30 + 2, 8 * 30 + 2) and g.dtype == np.uint8
    assert make_grid(torch.rand(169, 1, 28, 28), 13, padding=0).shape == (364, 364)
    assert make_grid(torch.rand(5, 3, 8, 6), 4).shape == (2 * 10 + 2, 4 * 8 + 2, 3)


def test_grid_places_images_row_by_row():
    imgs = torch.zeros(3, 1, 2, 2)
    imgs[1] = 1.0  # second image white: top row, second column
    g = make_grid(imgs, 2, padding=1, pad_value=0.5)
    assert (g[1:3, 4:6] == 255).all() and (g[1:3, 1:3] == 0).all()
    assert (g[4:6, 4:6] == 128).all()  # the empty cell keeps the pad value


def test_side_by_side_and_png_round_trip(tmp_path):
    a = make_grid(torch.rand(4, 1, 5, 5), 2)
    both = side_by_side(a, a, gap=8)
    assert both.shape == (a.shape[0], 2 * a.shape[1] + 8)
    p = save_png(both, tmp_path / "sub" / "x.png")
    np.testing.assert_array_equal(np.asarray(Image.open(p)), both)


def test_loss_curves_leave_the_callers_matplotlib_backend_alone(tmp_path):
    # fit() plots its curves at the end of training; in a notebook, switching pyplot to Agg
    # there would silence every later plt.show() of the notebook
    import json

    import matplotlib

    from vaekit.figures.png import plot_curves

    rows = [{"epoch": 1, "train_loss": 3.0, "test_loss": 2.5}, {"epoch": 2, "train_loss": 2.0}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        out = plot_curves(tmp_path / "m.jsonl", tmp_path / "curves.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    with Image.open(out) as im:
        assert im.size == (600, 420)  # 5 x 3.5 inches at 120 dpi
