"""The OCI image format and registries, knowing nothing of kiln's images.

Blobs, layers, manifests, layouts, archives, base-image sources and the registry client.
"""
