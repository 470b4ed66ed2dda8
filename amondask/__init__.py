"""amondask: quantum-chemical energies of large molecules from their amons, on Dask."""

from amondask import config
from amondask.amons import Amon, AmonConformer, extract_amons
from amondask.chem import Molecule, ReadResult, iter_batches, iter_molecules, read_molecules
from amondask.errors import AmondaskError, ErrorRecord
from amondask.label import Label, get_labeler, label_many
from amondask.models import AmonKRR
from amondask.pipeline.evaluate import evaluate
from amondask.pipeline.extract import extract
from amondask.pipeline.run import run
from amondask.pipeline.train import predict, predict_molecules, train
from amondask.solve import SolveResult, solve
from amondask.store import Workspace
from amondask.store.amons import AmonStore

__version__ = "0.1.0"

__all__ = [
    "Amon",
    "AmonConformer",
    "AmonKRR",
    "AmonStore",
    "AmondaskError",
    "ErrorRecord",
    "Label",
    "Molecule",
    "ReadResult",
    "SolveResult",
    "Workspace",
    "__version__",
    "config",
    "evaluate",
    "extract",
    "extract_amons",
    "get_labeler",
    "iter_batches",
    "iter_molecules",
    "label_many",
    "predict",
    "predict_molecules",
    "read_molecules",
    "run",
    "solve",
    "train",
]
