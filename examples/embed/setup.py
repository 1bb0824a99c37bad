"""Build the embedding example against the installed mcscore:

    python setup.py build_ext --inplace

It needs Cython, NumPy and mcscore (for mcscore/_kernels.pxd); no link step
against mcscore: the C functions are imported from mcscore._kernels when
the extension is imported.  OpenMP is used when the compiler has it.
"""
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

import mcscore.embed

if os.environ.get("MCEMBED_OPENMP", "1") == "0":
    omp_c, omp_l = [], []
elif sys.platform == "win32":
    omp_c, omp_l = ["/openmp"], []
elif sys.platform == "darwin":
    prefix = os.environ.get("MCSCORE_LIBOMP_PREFIX", "")
    omp_c = ["-Xpreprocessor", "-fopenmp"] + ([f"-I{prefix}/include"] if prefix else [])
    omp_l = ["-lomp"] + ([f"-L{prefix}/lib"] if prefix else [])
else:
    omp_c, omp_l = ["-fopenmp"], ["-fopenmp"]

ext = Extension(
    "mcembed",
    sources=["mcembed.pyx"],
    include_dirs=[np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    extra_compile_args=omp_c,
    extra_link_args=omp_l,
)

setup(
    name="mcembed",
    ext_modules=cythonize([ext], include_path=[mcscore.embed.get_include()],
                          compiler_directives={"language_level": 3}),
)
