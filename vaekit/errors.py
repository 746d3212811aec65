"""The data modules' error, on its own so that vaekit.data and vaekit.cache both import it
instead of each other. `from vaekit.data import DataError` is the same class."""


class DataError(Exception):
    """A dataset is missing, corrupted or unreadable; the message says what to do."""
