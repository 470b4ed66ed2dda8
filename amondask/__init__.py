"""amondask: quantum-chemical energies of large molecules from their amons, on Dask."""

from amondask import config
from amondask.chem import Molecule, ReadResult, iter_batches, iter_molecules, read_molecules
from amondask.errors import AmondaskError, ErrorRecord
from amondask.store import Workspace

__version__ = "0.1.0"

__all__ = [
    "AmondaskError",
    "ErrorRecord",
    "Molecule",
    "ReadResult",
    "Workspace",
    "__version__",
    "config",
    "iter_batches",
    "iter_molecules",
    "read_molecules",
]
