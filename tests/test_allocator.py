"""The command line's allocator setting (sciscore.allocator): freed arrays are reused inside the
process instead of being unmapped and faulted in again."""

import subprocess
import sys

import pytest

# MiB of memory that glibc maps for an array while it lives (mallinfo2's hblkhd): an mmapped
# array is unmapped again when freed, and its pages are faulted in anew the next time.
PROBE = """
import ctypes, sys, torch

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    from sciscore.allocator import keep_freed_memory
    assert keep_freed_memory()

def mapped_while_alive(mib):
    before = libc.mallinfo2().hblkhd
    x = torch.empty(mib << 18)  # float32
    during = libc.mallinfo2().hblkhd
    del x
    return round((during - before) / 2**20)

print(mapped_while_alive(16), mapped_while_alive(64))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_keep_freed_memory_serves_arrays_below_32_mib_from_the_heap():
    def mapped(mode):
        done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return [int(v) for v in done.stdout.split()]

    assert mapped("default") == [16, 64]  # glibc's threshold (128 KiB until raised): both mmapped
    assert mapped("keep") == [0, 64]      # below the 32 MiB threshold: from the heap, reused when freed


def test_the_command_line_applies_it_and_the_library_does_not(monkeypatch, tmp_path):
    import sciscore.allocator as allocator
    from sciscore.cli import main

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    assert main(["merge", str(tmp_path / "missing.nc"), "-o", str(tmp_path / "all.nc")]) == 2  # ran, then refused
    assert calls == [1]
    import sciscore.sde  # noqa: F401  (importing and using the library never calls it)
    assert calls == [1]
