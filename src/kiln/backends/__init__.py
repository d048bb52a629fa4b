"""Who builds an ImageSpec: the Docker engine now; a daemonless OCI writer later."""
