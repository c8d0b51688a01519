"""librosa's numba cache survives a run's first start on a fresh install (benchmark/numba_cache.py).

On an empty cache, the run process and the fork server of its feature workers both imported librosa, and so
both compiled its gufuncs into the same two-file cache at once (numba issue #10128): the cache was left
mismatched and every later process crashed (SIGSEGV) in ``librosa.core.pitch._parabolic_interpolation``. This
is how CI failed on a fresh clone.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from reliability_helpers import REPO, cli_command, run_args, subprocess_env, tone_folder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="file locks through fcntl (POSIX)")

# a strided float32 spectrogram slice, as the chroma encoder's tuning estimate passes it (the call that crashed)
LOAD_CACHED_GUFUNC = """
import numpy as np
from librosa.core.pitch import _parabolic_interpolation
S = np.asfortranarray(np.random.default_rng(0).random((1025, 44), dtype=np.float32))
print(_parabolic_interpolation(S[100:460], axis=-2).shape)
"""


def _import_guarded(tmp_path, wait_seconds: float) -> subprocess.CompletedProcess:
    """A child process imports a module of a guarded package (a stand-in for librosa) through the guard."""
    package = tmp_path / "stand_in_pkg"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("IMPORTED = True\n")
    code = textwrap.dedent(f"""
        import sys, warnings
        sys.path.insert(0, {str(tmp_path)!r})
        import benchmark.numba_cache as guard
        guard.GUARDED = guard.GUARDED | {{"stand_in_pkg"}}
        guard.WAIT_SECONDS = {wait_seconds}
        warnings.simplefilter("always")
        import stand_in_pkg
        print("imported", stand_in_pkg.IMPORTED, type(stand_in_pkg.__spec__.loader).__name__)
    """)
    return subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_an_import_of_a_guarded_package_waits_for_the_lock_another_process_holds(tmp_path):
    from benchmark.numba_cache import held

    # this process holds it: the child cannot take it, gives up after its (short) wait, says so
    with held(str(tmp_path / "stand_in_pkg")):
        blocked = _import_guarded(tmp_path, wait_seconds=0.3)
    assert blocked.returncode == 0, blocked.stderr
    assert "imported True _LockedLoader" in blocked.stdout
    assert "another process has held" in blocked.stderr and "musicbench-numba-" in blocked.stderr

    free = _import_guarded(tmp_path, wait_seconds=0.3)  # released: taken at once, no warning
    assert free.returncode == 0, free.stderr
    assert "imported True _LockedLoader" in free.stdout
    assert "another process has held" not in free.stderr


def test_the_lock_is_reentrant_and_released_when_the_outermost_holder_ends(tmp_path):
    from benchmark import numba_cache

    with numba_cache.held(str(tmp_path)):
        with numba_cache.held(str(tmp_path)):
            assert numba_cache._fd is not None
        assert numba_cache._fd is not None
    assert numba_cache._fd is None and numba_cache._depth == 0


def test_a_child_forked_while_the_lock_is_held_does_not_keep_it(tmp_path):
    import multiprocessing

    from benchmark.numba_cache import held

    context = multiprocessing.get_context("fork")
    release = context.Event()
    with held(str(tmp_path / "stand_in_pkg")):
        child = context.Process(target=release.wait, args=(60,))
        child.start()  # forked while this process holds the lock: it inherits the open lock file
    try:
        after = _import_guarded(tmp_path, wait_seconds=0.3)  # released here, the child still alive
    finally:
        release.set()
        child.join(60)
    assert after.returncode == 0, after.stderr
    assert "another process has held" not in after.stderr


def test_a_first_run_on_an_empty_numba_cache_leaves_a_cache_later_processes_can_load(tmp_path):
    refs, targets = tmp_path / "refs", tmp_path / "targets"
    tone_folder(refs, 3, 1.0)
    tone_folder(targets, 2, 1.0, start_hz=200.0, prefix="t")
    env = subprocess_env(NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"), MUSICBENCH_PROGRESS="lines")
    args = [*run_args("chroma", refs, targets, tmp_path / "cache", "numba-cache"), "--metrics", "none"]
    first = subprocess.run(cli_command(*args), env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert first.returncode == 0, first.stderr[-3000:]
    assert list((tmp_path / "numba-cache").rglob("*pitch._pi_wrapper*.nbc")), "the run compiled nothing into the cache"

    later = subprocess.run(
        [sys.executable, "-c", LOAD_CACHED_GUFUNC], env=env, capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert later.returncode == 0, f"loading the cache the first run wrote crashed (rc {later.returncode})"
    assert "(360, 44)" in later.stdout
