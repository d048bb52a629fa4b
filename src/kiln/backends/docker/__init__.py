"""The Docker engine backend: the docker client, the Builder that drives it, its build log, the smoke test."""
