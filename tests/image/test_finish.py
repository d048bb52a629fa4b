"""kiln.image.finish on a real site-packages: real interpreters compile and probe it."""

from __future__ import annotations

import importlib.util
import marshal
import subprocess
import sys
from pathlib import Path

from kiln.image import finish
from kiln.image.finish import BytecodePlan, compile_environment

SHOWN = "/opt/kiln/venv/lib/python3.11/site-packages"
TAG = sys.implementation.cache_tag


def distribution(site: Path, name: str, files: dict[str, str]) -> None:
    """``name`` installed the way pip leaves it: its files, METADATA and a RECORD that lists them."""
    for relative, text in files.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n", encoding="utf-8")
    rows = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD"]
    (info / "RECORD").write_text("".join(f"{row},,\n" for row in rows), encoding="utf-8")


def site_packages(tmp_path: Path) -> Path:
    site = tmp_path / "site-packages"
    distribution(
        site,
        "Only-MLflow",
        {
            "onlymlflow/__init__.py": "from onlymlflow import used\n",
            "onlymlflow/used.py": "def f():\n    return 1 + 2\n",
            "onlymlflow/server.py": "SERVER = True\n",
        },
    )
    distribution(site, "model-lib", {"modellib/__init__.py": "X = 1\n", "modellib/rare.py": "Y = 2\n"})
    return site


def pyc(source: Path) -> Path:
    return source.parent / "__pycache__" / f"{source.stem}.{TAG}.pyc"


def test_start_only_packages_get_bytecode_for_what_the_probe_imports(tmp_path: Path) -> None:
    site = site_packages(tmp_path)
    note, failed = compile_environment(
        sys.executable, str(site), shown_as=SHOWN, start_only=["only-mlflow"], probe_modules=["onlymlflow"]
    )
    assert (note, failed) == ("", [])
    assert pyc(site / "onlymlflow/__init__.py").is_file() and pyc(site / "onlymlflow/used.py").is_file()
    assert not pyc(site / "onlymlflow/server.py").exists()  # never imported at start: no pyc
    assert pyc(site / "modellib/__init__.py").is_file() and pyc(site / "modellib/rare.py").is_file()


def test_pycs_are_unchecked_hash_name_the_image_path_and_carry_no_column_tables(tmp_path: Path) -> None:
    site = site_packages(tmp_path)
    compile_environment(sys.executable, str(site), shown_as=SHOWN)
    data = pyc(site / "onlymlflow/used.py").read_bytes()
    assert data[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, never checked against the source
    code = marshal.loads(data[16:])
    assert code.co_filename == f"{SHOWN}/onlymlflow/used.py"
    function = next(const for const in code.co_consts if hasattr(const, "co_positions"))
    if sys.version_info >= (3, 11):  # older interpreters write no column tables at all
        assert {position[2:] for position in function.co_positions()} == {(None, None)}


def test_the_same_files_give_the_same_pycs(tmp_path: Path) -> None:
    first, second = site_packages(tmp_path / "a"), site_packages(tmp_path / "b")
    for site in (first, second):
        compile_environment(sys.executable, str(site), shown_as=SHOWN)
    names = sorted(p.relative_to(first) for p in first.rglob("*.pyc"))
    assert len(names) == 5
    assert [(first / n).read_bytes() for n in names] == [(second / n).read_bytes() for n in names]


def test_a_failed_probe_compiles_everything_and_says_why(tmp_path: Path) -> None:
    site = site_packages(tmp_path)
    (site / "onlymlflow/__init__.py").write_text("import not_installed_anywhere\n", encoding="utf-8")
    note, failed = compile_environment(
        sys.executable, str(site), start_only=["only-mlflow"], probe_modules=["onlymlflow"]
    )
    assert failed == []
    assert "importing onlymlflow failed" in note and "not_installed_anywhere" in note
    assert pyc(site / "onlymlflow/server.py").is_file()


def test_the_file_runs_on_its_own_as_the_docker_backend_runs_it(tmp_path: Path) -> None:
    """The env stage runs the module's file with the image's interpreter, kiln not installed."""
    site = site_packages(tmp_path)
    plan = BytecodePlan(start_only=("only-mlflow",), probe=("onlymlflow",))
    done = subprocess.run(
        [sys.executable, "-I", finish.__file__, "--site-packages", str(site), *plan.arguments()],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert pyc(site / "onlymlflow/used.py").is_file() and not pyc(site / "onlymlflow/server.py").exists()


def test_a_file_that_does_not_compile_is_skipped_like_pip_does(tmp_path: Path) -> None:
    site = site_packages(tmp_path)
    (site / "modellib/rare.py").write_text("print 'python 2'\n", encoding="utf-8")
    assert compile_environment(sys.executable, str(site)) == ("", [])
    assert not pyc(site / "modellib/rare.py").exists() and pyc(site / "modellib/__init__.py").is_file()


def test_a_record_path_with_a_comma_is_read_as_csv_and_compiled(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    distribution(site, "odd-names", {"odd/a,b.py": "X = 1\n"})
    record = next(site.glob("odd_names-*.dist-info")) / "RECORD"
    record.write_text('"odd/a,b.py",,\nodd_names-1.0.dist-info/RECORD,,\n', encoding="utf-8")
    assert compile_environment(sys.executable, str(site)) == ("", [])
    assert (site / "odd/__pycache__" / f"a,b.{TAG}.pyc").is_file()


def test_a_probe_that_prints_after_its_list_is_a_failed_probe(tmp_path: Path) -> None:
    site = site_packages(tmp_path)
    (site / "onlymlflow/__init__.py").write_text("import atexit\natexit.register(print, 'bye')\n")
    note, failed = compile_environment(
        sys.executable, str(site), start_only=["only-mlflow"], probe_modules=["onlymlflow"]
    )
    assert failed == [] and "printed no list of modules" in note
    assert pyc(site / "onlymlflow/server.py").is_file()  # so every module was compiled
