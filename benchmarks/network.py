"""``pixeldcn bench network``: the paper's U-Net with each up-sampling kind (placeholder)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_network(args: argparse.Namespace) -> int:
    raise NotImplementedError
