"""Limits the test cluster is configured with that tests also check (a module of its
own: ``from conftest import`` finds tests/unit's conftest when both run in one session)."""

# What one job's outputs may hold on the proxy: above the largest job's of these tests
# (two outputs of 12 MiB, test_large_outputs), below three of them (its test of the limit).
JOB_MAX_OUTPUT = 32 << 20
