"""Entry point: ``python run_peer.py <adapter> <command> [options]``.

Imports ``bench_<adapter>`` as a module (never as ``__main__``, so that task functions keep
their importable module path) and runs ``bench_common.main`` on its ``PEER``."""

import importlib
import sys

import bench_common

if __name__ == "__main__":
    adapter = importlib.import_module(f"bench_{sys.argv[1]}")
    bench_common.main(adapter.PEER, sys.argv[2:])
