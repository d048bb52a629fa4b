"""Security of the image and of the builder: the tests that check each promise, run and reported.

The image checks run real containers of images kiln built (tests/e2e/test_security.py and
four tests of tests/e2e/test_image.py); the builder checks run the real CLI on hostile
models (tests/cli/test_build_security.py).
"""

from __future__ import annotations

from bench.reliability.pytest_trials import Described, trials_from_tests
from bench.reliability.table import Section

IMAGE = "image security"
IMAGE_TESTS = "tests/e2e/test_image.py"

# Checks tests/e2e/test_image.py already makes (they record no row of their own).
DESCRIBED = {
    f"{IMAGE_TESTS}::test_image_config": Described(
        IMAGE,
        "the image config of a kiln build",
        "USER 10001:0, EXPOSE 8080, HEALTHCHECK, STOPSIGNAL SIGTERM",
    ),
    f"{IMAGE_TESTS}::test_arbitrary_user_and_read_only_root": Described(
        IMAGE,
        "docker run --user 12345 --read-only --tmpfs /tmp",
        "ready, and the predictions equal the model's own",
    ),
    f"{IMAGE_TESTS}::test_model_is_root_owned_and_read_only_for_the_runtime_user": Described(
        IMAGE,
        "owner and modes of /opt/ml/model, and a write as the runtime user",
        "owned by root, 755/644, the write refused",
    ),
    f"{IMAGE_TESTS}::test_no_secret_in_any_layer_or_the_config": Described(
        IMAGE,
        "a build whose host pip has an extra index with a token in its URL (PIP_EXTRA_INDEX_URL): "
        "docker save, every layer's files and names, config and history searched",
        "the index received the token during the build; it is in no layer, the config or the history",
    ),
}

TESTS = (
    "tests/e2e/test_security.py",
    *DESCRIBED,
    "tests/cli/test_build_security.py",
)

NOTES = """
The image is also built to need nothing more: it writes only under `/tmp/kiln`, so
`--read-only` with a tmpfs on `/tmp` is enough, and `--user` with any UID works (group 0).
The workers listen on a unix socket that only nginx reaches, so port 8080 is the only one
open. kiln never unpacks archives: `-m` takes a model directory (or a URI that MLflow's own
client downloads into a temporary directory). Requirement strings are parsed with
`packaging` and handed to `uv` and `pip` as argument lists and files, never to a shell; the
Dockerfile names only the lock file, never a requirement.

Every file `MLmodel` names (`python_env.yaml`, `conda.yaml`, `requirements.txt`) is read through
`kiln.env.sources.model_file`, which refuses an absolute path, `..` or a symlink that leaves
the model, including the base-image step that reads only the Python version.
"""


def run(quick: bool = False) -> Section:
    # The checks are facts, not rates: quick and full runs do the same work.
    return Section(
        "Image and builder security", tuple(trials_from_tests(list(TESTS), described=DESCRIBED)), NOTES
    )
