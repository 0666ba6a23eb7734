"""Build shim: metadata lives in setup.cfg; this only adds the C parts: the emulator's
runtime guard and the native supervisor's notification loop."""
from setuptools import Extension, setup

setup(ext_modules=[Extension('zvm_core._guard', ['zvm_core/_guard.c'],
                             extra_compile_args=['-O2']),
                   Extension('zvm_core.engines.native._fastcall',
                             ['zvm_core/engines/native/fastcall.c'],
                             extra_compile_args=['-O2', '-Wall'])])
