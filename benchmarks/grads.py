"""Parameter-level Jacobian cost relative to one plain backward, vectorised vs python loop.

For T ∈ {2, 4, 8} tasks on the multidigits CNN (a shared encoder, T classifier heads) this
times, after an untimed forward pass each repetition:
  * ``sum``: one backward of Σ_t L_t (what EW costs),
  * ``vmap``: ``repmtl.grads.parameter_jacobian`` (one vectorised backward for all T rows),
  * ``loop``: the same Jacobian from T python-loop backward passes,
and prints medians and the ratios to ``sum`` measured in this one run.

    python benchmarks/grads.py [--batch 128] [--repeats 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

from repmtl.grads import parameter_jacobian  # noqa: E402
from repmtl.model import MultiTaskModel  # noqa: E402
from repmtl.nets.small import ClassifierHead, SmallConvEncoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8])
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 1, 22, 22, device=device)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} repeats={args.repeats}")
    print(f"{'T':>3} {'sum ms':>9} {'vmap ms':>9} {'loop ms':>9} {'vmap/sum':>9} {'loop/sum':>9} {'loop/vmap':>10}")
    for num_tasks in args.tasks:
        encoder = SmallConvEncoder(1)
        heads = {f"t{i}": ClassifierHead(64 * 5 * 5, 10) for i in range(num_tasks)}
        model = MultiTaskModel(encoder, heads).to(device)
        labels = torch.randint(0, 10, (args.batch,), device=device)
        shared = list(model.shared_parameters())
        state: dict[str, torch.Tensor] = {}

        def forward() -> None:
            model.zero_grad(set_to_none=True)
            out = model(x)
            state["losses"] = [nn.functional.cross_entropy(p, labels) for p in out.predictions.values()]

        timings = {
            "sum": median_seconds(lambda: sum(state["losses"]).backward(), forward, repeats=args.repeats, device=device),
            "vmap": median_seconds(lambda: parameter_jacobian(state["losses"], shared, vectorize=True), forward, repeats=args.repeats, device=device),
            "loop": median_seconds(
                lambda: parameter_jacobian(state["losses"], shared, vectorize=False), forward, repeats=args.repeats, device=device
            ),
        }
        s, v, lp = timings["sum"], timings["vmap"], timings["loop"]
        print(f"{num_tasks:>3} {s * 1e3:>9.2f} {v * 1e3:>9.2f} {lp * 1e3:>9.2f} {v / s:>9.2f} {lp / s:>9.2f} {lp / v:>10.2f}")


if __name__ == "__main__":
    main()
