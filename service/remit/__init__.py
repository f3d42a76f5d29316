"""remit: schemes of delegation for children's social care, compiled to Casbin and served
over gRPC.

Exception tree (see :mod:`remit.model.errors`)::

    RemitError
    ├── RequestError
    │   ├── InvalidArgument
    │   └── NotFound
    ├── PolicyError
    └── CompileError
"""

from remit.model.errors import (
    CompileError,
    InvalidArgument,
    NotFound,
    PolicyError,
    Problem,
    RemitError,
    RequestError,
)

__all__ = [
    "CompileError",
    "InvalidArgument",
    "NotFound",
    "PolicyError",
    "Problem",
    "RemitError",
    "RequestError",
]
__version__ = "0.1.0"
