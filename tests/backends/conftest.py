"""Fixtures for the Docker backend tests."""

from __future__ import annotations

from tests.docker_support import docker_builder, image_names  # noqa: F401
