"""``kiln-probe``: a linux-64 package with a native shared library that has its prefix compiled in.

It is the smallest package that shows an installer did both kinds of prefix replacement:

* ``lib/libkilnprobe.so`` holds the build prefix in a C string (a **binary** placeholder:
  the installer must overwrite it in place and pad with NULs);
* ``lib/python3.11/site-packages/kilnprobe/_kilnprobe...so`` is a CPython extension that links
  that library through an ``$ORIGIN`` RPATH and returns the string;
* ``kilnprobe/__init__.py`` and ``share/kilnprobe/prefix.txt`` hold it as **text**.

``python -c "import kilnprobe; print(kilnprobe.report())"`` prints both, and
``kilnprobe.message()`` reads a data file found through the compiled-in path.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conda_channel.package import PackageMeta, write_package
from tests.conda_channel.wheels import PYTHON_DEPENDENCY

VERSION = "1.0.0"
EXTENSION = "_kilnprobe.cpython-311-x86_64-linux-gnu.so"

_LIBRARY_C = r"""
/* The prefix the package was installed for: replaced in place by the installer. */
static const char data_dir[] = KILNPROBE_PREFIX "/share/kilnprobe";
const char *kilnprobe_data_dir(void) { return data_dir; }
"""

_EXTENSION_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
const char *kilnprobe_data_dir(void);
static PyObject *data_dir(PyObject *self, PyObject *args) {
    return PyUnicode_FromString(kilnprobe_data_dir());
}
static PyMethodDef methods[] = {{"data_dir", data_dir, METH_NOARGS, "compiled-in data dir"}, {0}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kilnprobe", NULL, -1, methods};
PyMODINIT_FUNC PyInit__kilnprobe(void) { return PyModule_Create(&module); }
"""

_INIT_PY = '''"""kiln-probe: where the conda installer said this package lives."""

from pathlib import Path

from kilnprobe._kilnprobe import data_dir

PREFIX = "{placeholder}"


def message() -> str:
    return (Path(data_dir()) / "message.txt").read_text().strip()


def report() -> dict:
    return {{"text": PREFIX, "binary": data_dir()}}
'''


def build_probe(python_include: Path, placeholder: str, out_dir: Path, work: Path) -> Path:
    """Compile and pack kiln-probe against the headers in ``python_include`` (CPython 3.11)."""
    if work.exists():
        shutil.rmtree(work)
    source = work / "src"
    staged = work / "staged"
    source.mkdir(parents=True)
    (source / "kilnprobe.c").write_text(_LIBRARY_C)
    (source / "ext.c").write_text(_EXTENSION_C)
    lib = staged / "lib"
    package = lib / "python3.11" / "site-packages" / "kilnprobe"
    package.mkdir(parents=True)
    _gcc("-shared", "-fPIC", "-O2", f'-DKILNPROBE_PREFIX="{placeholder}"', "-Wl,-soname,libkilnprobe.so",
         "-o", str(lib / "libkilnprobe.so"), str(source / "kilnprobe.c"))  # fmt: skip
    _gcc("-shared", "-fPIC", "-O2", f"-I{python_include}", "-o", str(package / EXTENSION),
         str(source / "ext.c"), f"-L{lib}", "-lkilnprobe", "-Wl,-rpath,$ORIGIN/../../..")  # fmt: skip
    (package / "__init__.py").write_text(_INIT_PY.format(placeholder=placeholder))
    share = staged / "share" / "kilnprobe"
    share.mkdir(parents=True)
    (share / "message.txt").write_text("hello from kiln-probe\n")
    (share / "prefix.txt").write_text(f"{placeholder}\n")
    meta = PackageMeta(
        name="kiln-probe", version=VERSION, build="py311_0", subdir="linux-64", depends=(PYTHON_DEPENDENCY,)
    )
    return write_package(staged, meta, out_dir, placeholder=placeholder)


def _gcc(*args: str) -> None:
    result = subprocess.run(["gcc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"gcc failed: {result.stderr[-3000:]}")
