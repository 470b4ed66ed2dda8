"""amondask: quantum-chemical energies of large molecules from their amons, on Dask."""

from amondask import config
from amondask.chem import Molecule
from amondask.errors import AmondaskError

__version__ = "0.1.0"

__all__ = ["AmondaskError", "Molecule", "__version__", "config"]
