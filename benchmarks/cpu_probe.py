"""How fast this (shared) machine is right now: a fixed PyTorch workload, timed.

    python benchmarks/cpu_probe.py

3,000 float32 products of a 256x384 by a 384x384 matrix (the main job's hidden width) on
PyTorch's default threads. Run it before and after a timed job: on a shared virtual machine
the same job's time moves by 40% from one hour to the next, and the probe moves with it, so
two job times are comparable only where their probes are.
"""

from __future__ import annotations

import time

import torch


def main() -> None:
    torch.manual_seed(0)
    weight, batch = torch.randn(384, 384), torch.randn(256, 384)
    started = time.perf_counter()
    for _ in range(3000):
        batch @ weight
    seconds = time.perf_counter() - started
    threads = torch.get_num_threads()
    print(f"probe: 3000 fp32 256x384x384 matmuls in {seconds:.2f} s ({threads} threads)")


if __name__ == "__main__":
    main()
