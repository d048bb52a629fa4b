"""ModelInfo -> EnvSpec: Python version, locked requirements with hashes, a wheelhouse."""
