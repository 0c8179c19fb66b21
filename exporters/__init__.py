"""Framework exporters of pixeldcn: one subpackage per training framework.

``exporters.pytorch``: PyTorch modules of every up-sampling layer kind, the networks built with
them, ONNX export through the core's emitters, verification and safe checkpoint loading.
"""
