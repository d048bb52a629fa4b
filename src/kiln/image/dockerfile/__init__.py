"""The Docker backend's input: the Dockerfile rendered from an ImageSpec, and the build context around it."""
