"""``zc``: the users' command line client (``doc/client.md``).

``cli`` parses the command line; ``session`` authenticates as the ``swift``
command does and sends requests; ``jobs`` builds jobs for the common cases;
``report`` reads what the server says about each node (the one place that
knows the ``X-Nexe-*`` headers and the JSON report); ``display`` prints the
table and progress; ``zapps`` makes, checks and deploys apps; ``local``
runs a job on this machine with ``zvm``.
"""
