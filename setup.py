"""Build shim: metadata lives in setup.cfg; this only adds the C parts: the emulator's
runtime guard, the channels' running MD5, the native supervisor's notification loop and the
object server's open of a batch node's object."""
from setuptools import Extension, setup

setup(ext_modules=[Extension('zvm_core._guard', ['zvm_core/_guard.c'],
                             extra_compile_args=['-O2']),
                   Extension('zvm_core._md5', ['zvm_core/_md5.c'], depends=['zvm_core/md5.h'],
                             extra_compile_args=['-O2', '-Wall']),
                   Extension('zvm_core.engines.native._fastcall',
                             ['zvm_core/engines/native/fastcall.c'], include_dirs=['zvm_core'],
                             depends=['zvm_core/md5.h'], extra_compile_args=['-O2', '-Wall']),
                   Extension('zerocloud.object._plain', ['zerocloud/object/_plain.c'],
                             include_dirs=['zvm_core'], depends=['zvm_core/md5.h'],
                             extra_compile_args=['-O2', '-Wall'])])
