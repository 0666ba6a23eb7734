"""The formats a ``sql/1.0`` request may name: the planner checks them, ``zc sql`` offers them.

A module of its own that imports nothing: ``zc`` needs only these names, and
importing the planner (the host's SQLite checks) would cost every ``zc``
command 30-60 ms of start-up.
"""

FORMATS = ('csv', 'json')           # "format": the answer's
INPUT_FORMATS = ('csv', 'jsonl')    # "input"."format": the objects'
