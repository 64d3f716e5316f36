"""Networks: backbones, heads and the small CPU nets of the embedded benchmarks."""
