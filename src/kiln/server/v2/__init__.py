"""The Open Inference Protocol v2 (KServe V2, REST) next to MLflow's protocol, on the same port.

``tensors`` parses an inference request, ``decode`` turns its tensors into what the model's
``predict`` takes, ``encode`` turns the prediction into output tensors, ``metadata``
describes the model from its signature, and ``routes`` serves it all through the same
body limit, queue limit, request timeout and metrics as ``/invocations``. The decoding and
encoding rules are those of MLServer's MLflow runtime (``mlserver-mlflow`` 1.7), so a
request gets the answer MLServer would give for the same model (docs/scoring.md lists
where kiln deliberately differs).
"""
