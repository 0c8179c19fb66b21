"""``pixeldcn bench serve``: a served model (placeholder)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_serve(args: argparse.Namespace) -> int:
    raise NotImplementedError
