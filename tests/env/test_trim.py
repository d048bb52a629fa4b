"""kiln.env.trim on locks written the way ``uv pip compile`` annotates them."""

from __future__ import annotations

from kiln.env.lockfile import parse_lock
from kiln.env.trim import mlflow_only, trim_lock

HASH = "--hash=sha256:" + "0" * 64


def entry(name: str, *via: str) -> str:
    head = f"{name}==1.0 \\\n    {HASH}\n"
    if len(via) == 1:
        return head + f"    # via {via[0]}\n"
    return head + "    # via\n" + "".join(f"    #   {source}\n" for source in via)


def lock(*entries: str) -> str:
    return "".join(entries)


MLFLOW_ONLY = (
    entry("mlflow-skinny", "-r model.in"),
    entry("gitpython", "mlflow-skinny"),
    entry("gitdb", "gitpython"),
    entry("smmap", "gitdb"),
    entry("databricks-sdk", "mlflow-skinny"),
    entry("google-auth", "databricks-sdk"),
    entry("cryptography", "google-auth"),
    entry("cffi", "cryptography"),
    entry("pycparser", "cffi"),
    entry("scikit-learn", "-r model.in"),
    entry("uvicorn", "-r kiln-runtime.in"),
)


def test_what_only_mlflow_needs_is_left_out_and_the_rest_is_byte_for_byte_the_same() -> None:
    text = lock(*MLFLOW_ONLY)
    trimmed = trim_lock(text)
    assert trimmed.left_out == ("cffi", "cryptography", "gitdb", "gitpython", "pycparser", "smmap")
    names = [e.name for e in parse_lock(trimmed.text)]
    assert names == ["mlflow-skinny", "databricks-sdk", "google-auth", "scikit-learn", "uvicorn"]
    kept = lock(*(e for e in MLFLOW_ONLY if e.split("==")[0] in names))
    assert trimmed.text.endswith(kept)
    assert trimmed.text.startswith("# Left out: cffi, cryptography, gitdb, gitpython, pycparser, smmap (")


def test_a_package_the_model_names_itself_stays_with_what_it_needs() -> None:
    text = lock(*MLFLOW_ONLY[:1], entry("gitpython", "-r model.in", "mlflow-skinny"), *MLFLOW_ONLY[2:])
    assert trim_lock(text).left_out == ("cffi", "cryptography", "pycparser")


def test_a_package_reached_through_a_model_dependency_stays() -> None:
    # google-cloud-storage -> google-auth -> cryptography: the model's own path, not MLflow's.
    text = lock(
        *MLFLOW_ONLY[:5],
        entry("google-cloud-storage", "-r model.in"),
        entry("google-auth", "databricks-sdk", "google-cloud-storage"),
        *MLFLOW_ONLY[6:],
    )
    assert trim_lock(text).left_out == ("gitdb", "gitpython", "smmap")


def test_kilns_runtime_requirements_count_as_the_models() -> None:
    text = lock(*MLFLOW_ONLY, entry("cryptography", "-r kiln-runtime.in", "google-auth"))
    assert "cryptography" not in trim_lock(text).left_out


def test_a_lock_with_nothing_to_leave_out_is_unchanged() -> None:
    text = lock(entry("scikit-learn", "-r model.in"), entry("numpy", "scikit-learn"))
    assert trim_lock(text).text == text and trim_lock(text).left_out == ()


def test_the_full_mlflow_package_is_a_boundary_too() -> None:
    text = lock(entry("mlflow", "-r model.in"), entry("mlflow-skinny", "mlflow"), *MLFLOW_ONLY[1:4])
    assert trim_lock(text).left_out == ("gitdb", "gitpython", "smmap")


def test_mlflow_only_names_mlflow_and_what_only_it_reaches() -> None:
    text = lock(*MLFLOW_ONLY, entry("protobuf", "mlflow-skinny", "-r model.in"), entry("loose"))
    assert mlflow_only(text) == {
        "mlflow-skinny", "gitpython", "gitdb", "smmap", "databricks-sdk",
        "google-auth", "cryptography", "cffi", "pycparser",
    }  # fmt: skip
    # protobuf: the model names it too; loose: its entry says nothing of what requires it.
