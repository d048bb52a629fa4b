"""A streaming pyfunc (models from code): ``predict_stream`` yields ``chunks`` chunks of the prompt.

Params: ``chunks`` (how many), ``first_delay`` and ``delay`` (seconds before the first chunk and
before each later one), ``fail_at`` (raise at that
chunk), ``record`` (a file: one line per chunk produced, then ``closed`` when the generator
ends, whether it finished, failed or was closed).
"""

import time

import mlflow


def _prompt(model_input):
    if hasattr(model_input, "to_dict"):
        model_input = model_input.to_dict(orient="records")
    if isinstance(model_input, list):
        model_input = model_input[0]
    return model_input["prompt"] if isinstance(model_input, dict) else str(model_input)


class Counter(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        params = params or {}
        prompt = _prompt(model_input)
        return [f"{prompt}{i}" for i in range(int(params.get("chunks", 3)))]

    def predict_stream(self, context, model_input, params=None):
        params = params or {}
        prompt = _prompt(model_input)
        record = params.get("record") or ""
        try:
            for i in range(int(params.get("chunks", 3))):
                time.sleep(float(params.get("delay" if i else "first_delay", 0.0)))
                if i == int(params.get("fail_at", -1)):
                    raise ValueError(f"the model failed at chunk {i}")
                if record:
                    with open(record, "a") as out:
                        out.write(f"chunk {i}\n")
                yield {"index": i, "text": f"{prompt}{i}"}
        finally:
            if record:
                with open(record, "a") as out:
                    out.write("closed\n")


mlflow.models.set_model(Counter())
