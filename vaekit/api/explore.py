"""vaekit explore: a local web page to steer the latent space live."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import NONNEG_INT
from .runs import PORT, RunLike, checked, open_run, with_prior

if TYPE_CHECKING:
    from ..priors.base import Prior


def explore(
    run: RunLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    quiet: bool = False,
    tsne_max: int = 3000,
    prior: str | Prior | None = None,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    allow_nonfinite: bool = False,
    raw_weights: bool = False,
) -> str:
    """Serve the explorer of the run on host:port (0: a free port) until Ctrl-C; returns the
    URL it served. The port is bound first (a busy one fails at once, before the model and
    data load); quiet: no log line per request; tsne_max: a t-SNE map of at most N test images
    (cached beside the checkpoint; 0: only PCA and the top-KL dims); prior: Random sample
    draws from a fitted prior (see sample) instead of the model's own."""
    from .. import checkpoint
    from ..explorer import Explorer, host_warning, make_server, url_of
    from ..explorer.api import code_grid

    port, tsne_max = checked("port", port, PORT), checked("tsne_max", tsne_max, NONNEG_INT)
    try:  # bind first: a busy port fails at once, before the model and data load
        server = make_server(None, host, port, quiet=quiet)
    except OSError as e:
        raise ValueError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    try:
        r = open_run(run, device, data_dir, allow_nonfinite, raw_weights)
        fitted = None if prior is None else with_prior(r, prior).model
        x, y = r.test_set()
        if code_grid(r.model) is None:  # (a code grid's page has no map)
            print(f"encoding {len(x)} test images for the map...", flush=True)
        cache = None if r.path is None else checkpoint.resolve(r.path).with_suffix(".tsne.npz")
        server.RequestHandlerClass.explorer = Explorer(
            r.model, x, y, r.train_config["dataset"], tsne_max=tsne_max, cache=cache,
            fitted=fitted,
        )  # fmt: skip
        if warning := host_warning(host):
            print(warning, file=sys.stderr)
        print(f"vaekit explorer: {url_of(server)}  (Ctrl-C stops it)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:  # the usual way to stop a local server: not an error
        print("explorer stopped")
    finally:
        server.server_close()
    return url_of(server)
