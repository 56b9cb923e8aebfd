"""A model factory for reliability tests: examples whose first feature is 999
take SLOW_SECONDS to run, so a test can kill a worker mid-task or run into a
time limit. It also records
which worker process started the slow example."""
import os
import time

import torch
from torch import nn

SLOW_MARKER = 999.0


class SlowMLP(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0] == SLOW_MARKER).any()):
            marker = os.environ.get("OMNIMIND_TEST_SLOW_MARKER_DIR")
            if marker:
                with open(os.path.join(marker, f"started-{os.getpid()}"), "w") as fh:
                    fh.write(os.environ.get("OMNIMIND_TEST_WORKER_NAME", ""))
            # Short naps in a Python loop, like real work: a time limit can interrupt it.
            until = time.monotonic() + float(os.environ.get("OMNIMIND_TEST_SLOW_SECONDS", "2"))
            while time.monotonic() < until:
                time.sleep(0.01)
        return self.linear(x)


def build(settings):
    return SlowMLP(settings.model_input_size)


class PacedMLP(nn.Module):
    """Every forward pass takes at least OMNIMIND_TEST_PASS_SECONDS (default 5 ms), whatever
    its batch size, like a model whose cost is dominated by per-pass overhead: under a
    burst, requests queue behind the running pass and dynamic batches form."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(size, 1)
        self.pass_seconds = float(os.environ.get("OMNIMIND_TEST_PASS_SECONDS", "0.005"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        until = time.monotonic() + self.pass_seconds
        while time.monotonic() < until:
            time.sleep(0.001)
        return self.linear(x)


def build_paced(settings):
    return PacedMLP(settings.model_input_size)
