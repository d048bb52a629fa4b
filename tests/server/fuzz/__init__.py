"""Fuzzing the scoring protocol against a real runtime (nginx + uvicorn workers, or uvicorn alone).

``target.py`` starts and checks the server, ``wire.py`` sends raw requests and judges the
answers, ``generated.py`` (hypothesis) and ``schema.py`` (schemathesis against the
server's ``/openapi.json``) produce the requests. The tests here and
``bench/reliability/fuzz.py`` share them.
"""
