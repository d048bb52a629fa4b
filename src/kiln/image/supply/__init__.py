"""Supply-chain documents of an image: its SBOM (``sbom.py``, CycloneDX), its provenance
(``provenance.py``, in-toto + SLSA), and how ``--backend oci`` carries and attaches them (``attach.py``)."""
