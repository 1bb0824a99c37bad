#!/usr/bin/env bash
# Build LLVM's OpenMP runtime (libomp) for mcscore's macOS wheels.
#
# cibuildwheel runs this once (`before-all`) on the macOS runner.  Homebrew's
# libomp is built for the runner's own macOS version, so a wheel that bundles
# it fails to load on older systems; this builds libomp from LLVM's release
# sources with MACOSX_DEPLOYMENT_TARGET, for x86_64 and arm64, merges the two
# with lipo and installs headers and library into $MCSCORE_LIBOMP_PREFIX,
# which setup.py reads (-I$prefix/include, -L$prefix/lib -lomp).
set -euo pipefail
VERSION="${LIBOMP_VERSION:-18.1.8}"
PREFIX="${MCSCORE_LIBOMP_PREFIX:-/tmp/mcscore-libomp}"
TARGET="${MACOSX_DEPLOYMENT_TARGET:-11.0}"
ARCHS="${LIBOMP_ARCHS:-x86_64 arm64}"
SRC_URL="https://github.com/llvm/llvm-project/releases/download/llvmorg-${VERSION}"

work="$(mktemp -d)"
cd "$work"
curl -fsSL -o openmp.tar.xz "${SRC_URL}/openmp-${VERSION}.src.tar.xz"
curl -fsSL -o cmake.tar.xz "${SRC_URL}/cmake-${VERSION}.src.tar.xz"
tar xf openmp.tar.xz
tar xf cmake.tar.xz
# the standalone openmp build looks for LLVM's shared cmake modules here
mv "cmake-${VERSION}.src" cmake

libs=()
for arch in $ARCHS; do
    cmake -S "openmp-${VERSION}.src" -B "build-${arch}" \
        -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="${work}/install-${arch}" \
        -DCMAKE_OSX_ARCHITECTURES="${arch}" \
        -DCMAKE_OSX_DEPLOYMENT_TARGET="${TARGET}" \
        -DCMAKE_INSTALL_NAME_DIR="${PREFIX}/lib" \
        -DLIBOMP_INSTALL_ALIASES=OFF \
        -DLIBOMP_OMPD_SUPPORT=OFF \
        -DLIBOMP_USE_HWLOC=OFF \
        -DOPENMP_ENABLE_LIBOMPTARGET=OFF
    cmake --build "build-${arch}" --parallel
    cmake --install "build-${arch}"
    libs+=("${work}/install-${arch}/lib/libomp.dylib")
done

mkdir -p "${PREFIX}/lib" "${PREFIX}/include"
first="${ARCHS%% *}"
cp "${work}/install-${first}/include/"omp*.h "${PREFIX}/include/"
lipo -create "${libs[@]}" -output "${PREFIX}/lib/libomp.dylib"
install_name_tool -id "${PREFIX}/lib/libomp.dylib" "${PREFIX}/lib/libomp.dylib"
lipo -info "${PREFIX}/lib/libomp.dylib"
otool -l "${PREFIX}/lib/libomp.dylib" | grep -A4 -E "LC_BUILD_VERSION|LC_VERSION_MIN" | head -20
