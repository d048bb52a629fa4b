"""kiln's layers made on the host for ``--backend oci``: environment, system packages, user, config."""
