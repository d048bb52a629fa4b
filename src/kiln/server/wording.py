"""MLflow's scoring-server error messages, word for word, with kiln's detail after them.

Clients and MLflow's own tests match the start of these messages (``"The input must be a
JSON dictionary with exactly one of the input fields"``), so every error kiln answers in
MLflow's protocol begins with the words MLflow 3.17's ``mlflow.pyfunc.scoring_server``
uses for the same failure; what kiln adds (the keys it saw, what it accepts) comes after.
``tests/server/test_differential.py`` checks each against MLflow's running server.

MLflow prints the format keys as a Python set, whose order changes from one process to
the next (string hashing); kiln prints the same set literal in a fixed order.
"""

from __future__ import annotations

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
LLM_KEYS = ("messages", "prompt", "input")

REQUIRED_INPUT_FORMAT = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "{" + ", ".join(repr(key) for key in FORMATS) + "}"
)
SCORING_PROTOCOL_CHANGE_INFO = (
    "IMPORTANT: The MLflow Model scoring protocol has changed in MLflow version 2.0. If you are"
    " seeing this error, you are likely using an outdated scoring request format. To resolve the"
    " error, either update your request format or adjust your MLflow Model's requirements file to"
    " specify an older version of MLflow (for example, change the 'mlflow' requirement specifier"
    " to 'mlflow==1.30.0'). If you are making a request using the MLflow client"
    " (e.g. via `mlflow.pyfunc.spark_udf()`), upgrade your MLflow client to a version >= 2.0 in"
    " order to use the new request format. For more information about the updated MLflow"
    " Model scoring protocol in MLflow 2.0, see"
    " https://mlflow.org/docs/latest/models.html#deploy-mlflow-models."
)
KILN_FORMATS = (
    "A JSON body may also carry a 'params' object, or be an LLM-style object with one of "
    f"{', '.join(repr(key) for key in LLM_KEYS)}."
)
INVALID_JSON = "Invalid input. Ensure that input is a valid JSON formatted string."
INVALID_UTF8 = "Invalid input. Ensure that input is a valid UTF-8 encoded string."
BAD_CSV = (
    "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid CSV-formatted "
    "Pandas DataFrame produced using the `pandas.DataFrame.to_csv()` method."
)
BAD_PARQUET = (
    "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid Parquet Pandas "
    "DataFrame produced using the `pandas.DataFrame.to_parquet()` method."
)
PREDICT_FAILED = (
    "Encountered an unexpected error while evaluating the model. Verify that the serialized input "
    "Dataframe is compatible with the model for inference."
)
CONTENT_TYPES = ("text/csv", "application/json", "application/vnd.apache.parquet")
UNSUPPORTED_CONTENT_TYPE = (
    f"This predictor only supports the following content types: Types: {list(CONTENT_TYPES)}."
)
ONLY_UTF8 = "The scoring server only supports UTF-8"
TIMEOUT = "Request processing time exceeded limit"

MAX_INPUT_SHOWN = 1000
"""Bytes of a body that is not JSON quoted in the message (MLflow quotes all of it)."""


def not_an_object(value: object) -> str:
    """A JSON body that is a list or a scalar."""
    received = "a list" if isinstance(value, list) else f"unexpected input type '{type(value)}"
    return f"Invalid input. {REQUIRED_INPUT_FORMAT}. Received {received}. {KILN_FORMATS}"


def not_one_format(keys: list[str], found: list[str]) -> str:
    """A JSON object with zero or several of the format keys (``found``) among ``keys``."""
    return (
        f"{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: {found}. "
        f"{SCORING_PROTOCOL_CHANGE_INFO} The body's keys: {keys}. {KILN_FORMATS}"
    )


def invalid_json(error: BaseException, body: bytes) -> str:
    """A body that is not JSON (or not UTF-8); MLflow's message quotes the input."""
    shown = repr(body[:MAX_INPUT_SHOWN])
    if len(body) > MAX_INPUT_SHOWN:
        shown += f" ... ({len(body) - MAX_INPUT_SHOWN} more bytes not shown)"
    return f"{INVALID_JSON} Error: '{error!r}'\nInput: \n{shown}\n"


def unknown_content_parameters(names: list[str], content_type: str) -> str:
    return (
        f"Unrecognized content type parameters: {', '.join(names)}. {SCORING_PROTOCOL_CHANGE_INFO} "
        f"The only parameter allowed is charset=utf-8 (Content-Type: {content_type!r})."
    )
