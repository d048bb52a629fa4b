"""Daemonless OCI images: reproducible layers, config and manifest written in Python (``--backend oci``)."""
