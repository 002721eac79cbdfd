"""mim_jax.runtime: entry points re-execute with a malloc that keeps freed memory."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from mim_jax import runtime

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="glibc tunables exist only on Linux/glibc")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", runtime.OPT_OUT)}
    return env | extra


def test_all_tunables_are_added_to_an_empty_environment():
    env = runtime.malloc_environment({"PATH": "/bin"}, glibc=True)
    assert env["PATH"] == "/bin"
    assert env["GLIBC_TUNABLES"].split(":") == list(runtime.TUNABLES)


def test_tunables_the_user_set_are_kept_and_the_rest_added():
    env = runtime.malloc_environment(
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4:glibc.cpu.x86_shstk=off"}, glibc=True
    )
    items = env["GLIBC_TUNABLES"].split(":")
    assert items[:2] == ["glibc.malloc.arena_max=4", "glibc.cpu.x86_shstk=off"]
    assert set(items[2:]) == set(runtime.TUNABLES[1:])


def test_nothing_changes_when_set_opted_out_or_not_glibc():
    done = {"GLIBC_TUNABLES": ":".join(runtime.TUNABLES)}
    assert runtime.malloc_environment(done, glibc=True) is None
    assert runtime.malloc_environment({runtime.OPT_OUT: "1"}, glibc=True) is None
    assert runtime.malloc_environment({}, glibc=False) is None
    assert runtime.malloc_environment({runtime.OPT_OUT: "0"}, glibc=True) is not None


@needs_glibc
def test_an_entry_point_re_executes_itself_with_the_tunables():
    run = lambda env: subprocess.run(
        [sys.executable, "-m", "mim_jax.runtime"], env=env, capture_output=True, text=True
    )
    done = run(_clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split(":") == list(runtime.TUNABLES)
    opted_out = run(_clean_env(**{runtime.OPT_OUT: "1"}))
    assert opted_out.stdout.strip() == ""


# Frees a 256 MiB block, allocates it again and counts the page faults of touching it anew
# (numpy's own huge-page advice off: XLA's buffers do not get it either).
_REFAULT = textwrap.dedent(
    """
    import resource, numpy as np
    np._core.multiarray._set_madvise_hugepage(False)
    size = 256 << 20
    a = np.ones(size, np.uint8); del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    b = np.ones(size, np.uint8)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


@needs_glibc
def test_freed_memory_is_reused_without_page_faults_only_with_the_tunables():
    pages = (256 << 20) // os.sysconf("SC_PAGE_SIZE")

    def refaults(env):
        done = subprocess.run(
            [sys.executable, "-c", _REFAULT], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    assert refaults(_clean_env()) > pages // 2  # glibc gave the block back: every page faults
    tuned = runtime.malloc_environment(_clean_env(), glibc=True)
    assert refaults(tuned) < pages // 20
