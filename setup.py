"""Build script for mcscore's Cython extension.

OpenMP is detected by compiling *and running* a tiny program with the
compiler setuptools chose.  When that fails the extension is built serially
with a warning (``mcscore.show_config()`` then reports ``openmp: False``);
set ``MCSCORE_REQUIRE_OPENMP=1`` to make the failure fatal instead (CI does).
``MCSCORE_OPENMP=0`` forces a serial build.
"""
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OMP_PROBE = textwrap.dedent(
    r"""
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d\n", n > 0 && omp_get_max_threads() > 0);
        return 0;
    }
    """
)


def _openmp_flags(compiler_type):
    """(compile flags, link flags) to try, by compiler family."""
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang needs libomp: honour a prefix set by the wheel build.
        prefix = os.environ.get("MCSCORE_LIBOMP_PREFIX", "")
        cflags = ["-Xpreprocessor", "-fopenmp"]
        ldflags = ["-lomp"]
        if prefix:
            cflags.append(f"-I{prefix}/include")
            ldflags.append(f"-L{prefix}/lib")
        return cflags, ldflags
    return ["-fopenmp"], ["-fopenmp"]


def _probe_openmp(compiler, cflags, ldflags):
    """Compile and run OMP_PROBE; True when it prints 1."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_probe.c")
        with open(src, "w") as fh:
            fh.write(OMP_PROBE)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
            exe = os.path.join(tmp, "omp_probe")
            compiler.link_executable(objs, exe, extra_postargs=ldflags)
            if compiler.compiler_type == "msvc":
                exe += ".exe"
            out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
            return out.returncode == 0 and out.stdout.strip() == "1"
        except Exception:  # noqa: BLE001 - any failure means "no OpenMP"
            return False


class BuildExt(build_ext):
    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            base = ["/O2"]
        else:
            base = ["-O3", "-fno-math-errno", "-ffp-contract=off", "-Wno-unreachable-code"]
        want = os.environ.get("MCSCORE_OPENMP", "1") != "0"
        cflags, ldflags = _openmp_flags(ctype)
        has_omp = want and _probe_openmp(self.compiler, cflags, ldflags)
        if not has_omp:
            msg = (
                "mcscore: OpenMP was not found (or MCSCORE_OPENMP=0); building the "
                "kernels serially. They stay correct and bit-identical, only slower."
            )
            if os.environ.get("MCSCORE_REQUIRE_OPENMP", "0") == "1":
                raise RuntimeError(msg + " MCSCORE_REQUIRE_OPENMP=1 makes this fatal.")
            warnings.warn(msg)
            cflags, ldflags = [], []
        for ext in self.extensions:
            ext.extra_compile_args = base + cflags + list(ext.extra_compile_args)
            ext.extra_link_args = ldflags + list(ext.extra_link_args)
        super().build_extensions()


def _numpy_lib_dirs():
    root = os.path.dirname(np.__file__)
    return [os.path.join(root, "random", "lib"), os.path.join(root, "_core", "lib")]


def _extension(name):
    """One extension per src/mcscore/_*.pyx; all link NumPy's C random
    library (npyrandom) and npymath, statically."""
    return Extension(
        f"mcscore.{name}",
        sources=[f"src/mcscore/{name}.pyx"],
        include_dirs=[np.get_include()],
        library_dirs=_numpy_lib_dirs(),
        libraries=["npyrandom", "npymath"] + ([] if sys.platform == "win32" else ["m"]),
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    )


_HERE = os.path.dirname(os.path.abspath(__file__))
_NAMES = sorted(
    f[:-4] for f in os.listdir(os.path.join(_HERE, "src", "mcscore")) if f.endswith(".pyx")
)
# _core, then _kernels first: the other modules cimport their C-level APIs
# (_core.pxd: driver, bit generators, OpenMP shim; _kernels.pxd: the kernels).
_NAMES.sort(key=lambda n: {"_core": 0, "_kernels": 1}.get(n, 2))
extensions = [_extension(n) for n in _NAMES]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
