"""Latency benchmarks of pixeldcn: single layers, whole networks, and served models.

Each benchmark is a ``pixeldcn bench`` subcommand (:mod:`benchmarks.cli`) that writes its results
as JSON (with the machine and the settings), a Markdown table and PNG plots. The heavy imports
(onnxruntime, torch, tritonclient, the exporters, triton_repo) happen inside the commands, so
``pixeldcn bench layers`` needs only the core and onnxruntime.
"""

__all__: list[str] = []
