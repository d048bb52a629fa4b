"""EnvSpec -> ImageSpec (layers, config) and the Dockerfile rendered from it."""
