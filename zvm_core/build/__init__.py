"""Build tools, apart from the runtime: what makes the programs the sandbox runs.

``toolchain`` compiles static guest programs into a content-addressed cache
(tests, benchmarks, the native engine's loader); ``interpreters`` builds the
python3, lua and sqlnode system images (``zvm-interpreters build``), which
``zvm_core.sysimages`` finds at run time.
"""
