"""mlflow -> mlflow-skinny unless the user asks for the full package."""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement

from kiln.env.mlflow_choice import PYFUNC_NEEDS, choose_mlflow


def reqs(*text: str) -> list[Requirement]:
    return [Requirement(t) for t in text]


def strings(requirements: tuple[Requirement, ...] | None) -> list[str]:
    return [str(r) for r in requirements or ()]


def test_pinned_mlflow_becomes_skinny_at_the_same_version() -> None:
    choice = choose_mlflow(reqs("mlflow==3.17.2", "numpy==2.4.6", "pandas==3.1.1", "scikit-learn==1.9.1"))
    assert strings(choice.requirements) == [
        "mlflow-skinny==3.17.2",
        "numpy==2.4.6",
        "pandas==3.1.1",
        "scikit-learn==1.9.1",
    ]
    (note,) = choice.notes
    assert note.startswith("mlflow==3.17.2 -> mlflow-skinny==3.17.2:")
    assert "--install-mlflow" in note
    assert strings(choice.fallback)[0] == "mlflow==3.17.2"
    assert choice.fallback_note == "mlflow-skinny==3.17.2 is not on the index: keeping mlflow==3.17.2"


def test_skinny_swap_adds_what_pyfunc_needs_and_keeps_markers() -> None:
    choice = choose_mlflow(reqs('mlflow<3,>=2.10; python_version >= "3.9"', "scikit-learn"))
    assert strings(choice.requirements) == [
        'mlflow-skinny<3,>=2.10; python_version >= "3.9"',
        "scikit-learn",
        "numpy",
        "pandas",
    ]
    assert "(+ numpy, pandas, which pyfunc needs)" in choice.notes[0]


def test_mlflow_with_extras_is_kept() -> None:
    choice = choose_mlflow(reqs("mlflow[gateway]==3.17.2"))
    assert strings(choice.requirements) == ["mlflow[gateway]==3.17.2"]
    assert "keeping the full" in choice.notes[0]


def test_install_mlflow_keeps_or_installs_the_full_package() -> None:
    kept = choose_mlflow(reqs("mlflow==3.17.2", "numpy"), install_mlflow=True)
    assert strings(kept.requirements) == ["mlflow==3.17.2", "numpy"]
    added = choose_mlflow(reqs("numpy"), install_mlflow=True, default_version="3.16.0")
    assert strings(added.requirements) == ["numpy", "mlflow==3.16.0"]
    swapped = choose_mlflow(reqs("mlflow-skinny==3.17.2"), install_mlflow=True)
    assert strings(swapped.requirements) == ["mlflow==3.17.2"]


def test_no_mlflow_at_all_adds_skinny_at_the_default_version() -> None:
    choice = choose_mlflow([], default_version="3.17.2")
    assert strings(choice.requirements) == ["mlflow-skinny==3.17.2", "numpy", "pandas"]
    assert strings(choice.fallback) == ["mlflow==3.17.2"]


def test_mlflow_home_wheel_replaces_every_mlflow_requirement() -> None:
    choice = choose_mlflow(reqs("mlflow==3.17.2", "numpy"), local_mlflow=("mlflow", "3.18.0.dev0"))
    assert strings(choice.requirements) == ["numpy", "mlflow==3.18.0.dev0"]
    assert "replaces mlflow==3.17.2" in choice.notes[0]


def test_skinny_metadata_lacks_what_pyfunc_needs() -> None:
    # The reason for PYFUNC_NEEDS, checked against the real metadata installed here.
    def base_requirements(dist: str) -> set[str]:
        found = set()
        for line in metadata.requires(dist) or []:
            requirement = Requirement(line)
            if requirement.marker is None or "extra" not in str(requirement.marker):
                found.add(requirement.name.lower())
        return found

    assert set(PYFUNC_NEEDS) <= base_requirements("mlflow")
    assert not set(PYFUNC_NEEDS) & base_requirements("mlflow-skinny")
