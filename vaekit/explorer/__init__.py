"""The latent explorer: the JSON API over a trained model (api), the HTTP server and page that
serve it (server, static/), and the 2-D maps of the latent means (projection)."""

from .api import ApiError, Explorer, parse_z, png_data_url, read_image
from .server import STATIC, ExplorerServer, host_warning, make_server, url_of

__all__ = [
    "ApiError",
    "Explorer",
    "ExplorerServer",
    "STATIC",
    "host_warning",
    "make_server",
    "parse_z",
    "png_data_url",
    "read_image",
    "url_of",
]
