import os as _os

__version__ = "0.1.0"

# numpy's OpenBLAS starts a pool of worker threads when imported; nothing here uses BLAS, and the
# privilege drop (privdrop.py) refuses to run beside threads that would keep root's capabilities.
# Set before any module imports numpy.
_os.environ["OPENBLAS_NUM_THREADS"] = "1"
