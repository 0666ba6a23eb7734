"""Limits the test cluster is configured with that tests also check (a module of its
own: ``from conftest import`` finds tests/unit's conftest when both run in one session)."""

# What one job's outputs may hold on the proxy: above the largest job's of these tests
# (two outputs of 12 MiB, test_large_outputs), below three of them (its test of the limit).
JOB_MAX_OUTPUT = 32 << 20

# What one job's programs may hold in the proxy's memory (zerovm_job_maxprograms): above
# what any job of these tests names (a zapp's 16 MiB member, test_hostile_review22; a few
# guest programs of under 1 MiB), small enough that a job over it takes few copies.
JOB_MAX_PROGRAMS = 20 << 20

# What one job's objects sent along may hold on the proxy's disk (zerovm_job_maxinputs):
# above what any job of these tests sends (a zapp image of 16 MiB, test_hostile_review22;
# graph inputs of 5 MiB), below three objects of 14 MiB (test_hostile_review23).
JOB_MAX_INPUTS = 40 << 20
