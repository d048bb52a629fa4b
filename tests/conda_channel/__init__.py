"""A real conda channel for tests: packages built here, indexed by rattler, served on 127.0.0.1.

``build.build_channel()`` builds (or takes from ``.cache/conda-channel``) a channel with a
relocatable CPython 3.11, ``kiln-probe`` (a native library with a binary prefix placeholder)
and scikit-learn's stack repackaged from PyPI wheels. ``serve.ChannelServer`` serves it open,
behind basic auth and behind an anaconda.org-style token. ``fixtures`` has the pytest
fixtures; a conftest.py uses them with ``from tests.conda_channel.fixtures import *``.
"""
