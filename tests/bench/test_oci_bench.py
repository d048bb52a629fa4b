"""bench.oci_bench: what it reads from ``kiln build --backend oci``'s output."""

from __future__ import annotations

from bench import oci_bench


def test_reads_reused_layers_and_the_push_report() -> None:
    text = (
        "Built kiln-bench/x:1 (sha256:fdb7e3ba93a2) with oci in 0s; 3 of 4 layers from cache\n"
        "Manifest digest: sha256:4f53\n"
        "Pushed 127.0.0.1:38973/bench/iris:2@sha256:4f53: 2 blobs uploaded (5604 bytes), 4 already there\n"
    )
    assert oci_bench.parse_output(text) == ("3 of 4", 2, 5604)
    assert oci_bench.parse_output("Built x with oci in 9s; 0 of 4 layers from cache\n") == ("0 of 4", 0, 0)
