"""Per-step time and memory of every method relative to EW: the same as ``repmtl bench``.

    python benchmarks/bench.py                       # defaults: mlp and cnn, T = 2 4 8, every method
    python benchmarks/bench.py --workloads resnet18 nyuv2 --tasks 2 4 --methods ew upgrad mgda
    python benchmarks/bench.py --libmtl ~/src/LibMTL --out bench.json
    python benchmarks/bench.py --help
"""

from __future__ import annotations

import sys

from repmtl.bench.command import main

if __name__ == "__main__":
    sys.exit(main())
