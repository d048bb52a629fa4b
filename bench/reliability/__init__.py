"""The reliability report: what kiln's runtime and builder were put through, and what happened.

``python -m bench.reliability`` runs every section and writes docs/reliability.md.
"""
