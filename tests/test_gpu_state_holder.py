"""The worker that holds GPU data for the driver checkpoint demo (05.06): its CPU-side behaviour."""

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
WORKER = Path(__file__).resolve().parents[1] / "helpers" / "perflab" / "workers" / "gpu_state_holder.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on a machine without a GPU")
def test_without_a_gpu_it_says_so_and_fails(tmp_path):
    done = subprocess.run([sys.executable, str(WORKER), "--gib", "1", "--go", str(tmp_path / "go")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "needs a CUDA GPU" in done.stderr


def test_checksum_is_an_exact_integer_sum():
    sys.path.insert(0, str(WORKER.parent))
    try:
        from gpu_state_holder import checksum
    finally:
        sys.path.pop(0)
    values = torch.tensor([2**31 - 1, 2**31 - 1, -(2**31)], dtype=torch.int32)
    assert checksum(values) == 2**31 - 2  # no int32 overflow
