"""How a deferred job's result is named in Swift: one place for the proxy
(``zerocloud.deferred``, which stores it) and the client (``zc``, which reads it and
must not import the proxy's modules)."""

from __future__ import annotations

import re
import uuid

HOME = '.zvm'                   # the container of a job POSTed to its account
NAME = re.compile(r'job-[0-9a-f]{32}')      # the result object's name: the job's id
HEADERS_SUFFIX = '.headers'     # <name>.headers: the answer's status and headers
STATE_SUFFIX = '.state'         # <name>.state: a running job's progress


def new_name() -> str:
    """A fresh job's result object name."""
    return f'job-{uuid.uuid4().hex}'
