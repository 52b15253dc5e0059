"""Device selection shared by every command (`--device auto|cpu|cuda`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sciscore.errors import UserError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for `name`: 'auto' picks CUDA when available, else the CPU."""
    import torch  # here, not at the top: the CLI reads DEVICE_CHOICES for --help without torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
        return torch.device(name)
    raise UserError(f"--device {name!r} is not a device; choose one of {', '.join(DEVICE_CHOICES)}")


def memory_bytes(name: str = "cpu") -> int | None:
    """The most memory a computation on device `name` can have, in bytes: the machine's RAM, or a
    CUDA device's when it has more (for 'auto' and 'cuda': this initializes CUDA in the process, so
    the default, 'cpu', asks the machine alone — networks are built on the CPU, and a process of a
    multi-GPU job must not touch GPU 0 before it picks its own); None where the platform does not
    say. An upper bound, for refusing requests that cannot fit anywhere before they start."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    if name != "cpu":
        import torch

        if torch.cuda.is_available():
            memory = max(memory, *(torch.cuda.get_device_properties(i).total_memory
                                   for i in range(torch.cuda.device_count())))
    return memory
