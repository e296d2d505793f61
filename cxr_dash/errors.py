"""The exceptions a user of the package can meet."""


class ImageReadError(ValueError):
    """An input file could not be used as a radiograph.

    Raised by every reader in :mod:`cxr_dash.imaging` for unreadable, empty,
    truncated, non-image or oversized input, and by the segmenter's entry
    points (:meth:`~cxr_dash.inference.Segmenter.predict`, ...) for an array
    that is not a finite, real-valued 2-D image. The message is written for the
    person who chose the file (it names the problem and what would work), so
    the dashboard shows it as is.
    """


class ModelSetError(RuntimeError):
    """No usable trained model set: missing manifest, weights or a mismatch."""
