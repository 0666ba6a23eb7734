"""ZeroCloud: deterministic, sandboxed computation next to the data in Swift.

The proxy filter (`zerocloud.proxy`) turns a job into nodes and sends each
node to an object server that holds its input; the object filter
(`zerocloud.object`) runs it there in the zvm_core sandbox. `zerocloud.devcluster`
starts a local Swift cluster with both installed.
"""
