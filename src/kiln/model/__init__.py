"""Model URIs -> a local model directory -> ModelInfo (MLmodel, signature, env files)."""
