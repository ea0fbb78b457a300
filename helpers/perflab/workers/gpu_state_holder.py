"""A process that holds random data on the GPU while another process checkpoints and restores it.

It fills ``--gib`` GiB of GPU memory with seeded random int32 values, prints one JSON line
``{"event": "ready", ...}`` with a checksum, then waits until the file ``--go`` exists. Meanwhile
the controlling process may lock it, checkpoint its GPU memory to the host, restore it and unlock it
(``cuCheckpointProcess*`` in the CUDA driver). When ``--go`` appears, it recomputes the checksum and
re-reads a few sampled values on the GPU, prints ``{"event": "verified", "same": ...}`` and exits.

Usage: python gpu_state_holder.py --gib 1 --go /path/to/go-file [--seed 0] [--timeout-s 300]

Taught in: notebooks/ch05_storage_io/05_06_checkpointing.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def checksum(x: torch.Tensor) -> int:
    """Sum of the int32 values in int64: an integer reduction, so the same data gives the same sum."""
    return int(x.sum(dtype=torch.int64).item())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, required=True, help="GiB of GPU memory to fill")
    ap.add_argument("--go", required=True, help="file whose appearance means: verify and exit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout-s", type=float, default=300.0, help="give up waiting for --go after this long")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_state_holder needs a CUDA GPU")

    n = int(args.gib * 2**30) // 4
    gen = torch.Generator(device="cuda").manual_seed(args.seed)
    data = torch.randint(-(2**31), 2**31 - 1, (n,), dtype=torch.int32, device="cuda", generator=gen)
    positions = torch.randint(0, n, (4096,), device="cuda", generator=gen)
    sample = data[positions].cpu()
    before = checksum(data)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()  # give back the generator's temporary blocks: the process holds the data, little else
    print(json.dumps({"event": "ready", "pid": os.getpid(), "bytes": 4 * n, "checksum": before}), flush=True)

    deadline = time.monotonic() + args.timeout_s
    while not os.path.exists(args.go):
        if time.monotonic() > deadline:
            raise SystemExit(f"no --go file after {args.timeout_s:.0f} s")
        time.sleep(0.02)

    after = checksum(data)  # the first CUDA work after a restore
    same_sample = bool(torch.equal(data[positions].cpu(), sample))
    print(json.dumps({"event": "verified", "checksum": after, "same": after == before and same_sample}), flush=True)


if __name__ == "__main__":
    main()
