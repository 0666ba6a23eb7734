"""Build shim: metadata lives in setup.cfg; this only adds the C guard."""
from setuptools import Extension, setup

setup(ext_modules=[Extension('zvm_core._guard', ['zvm_core/_guard.c'],
                             extra_compile_args=['-O2'])])
