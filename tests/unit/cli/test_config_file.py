"""The dev stack's config file and secret files: who can read them, where they are read from.

In-process: ``load_config`` is what every ``mcmp`` command runs first; ``write_private`` is how
``mcmp dev`` writes ``mcmp.env``, ``token.key``, ``flower.auth`` and ``demo-api.key``.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcmp.cli import common, dev

FILE_VARIABLES = ("MCMP_MONGODB_URI", "MCMP_REDIS_URL", "MCMP_BROKER_URL", "MCMP_CONFIG", "MCMP_SIM_MARK")


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A shell that configured nothing itself (so a config file would be read)."""
    for name in (*FILE_VARIABLES, "MCMP_TEST_ONLY_PATH", "PYTHONINSPECT_MARK"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _dev_file(folder: Path, extra: str = "") -> Path:
    data = folder / ".mcmp"
    data.mkdir(parents=True)
    path = data / "mcmp.env"
    path.write_text(f"export MCMP_SIM_MARK='from-file'\n{extra}")
    return path


def test_a_config_file_in_a_parent_folder_is_not_read(shell, tmp_path: Path) -> None:
    _dev_file(tmp_path)
    below = tmp_path / "src" / "app"
    below.mkdir(parents=True)
    assert common.load_config(below) is None
    assert "MCMP_SIM_MARK" not in os.environ
    assert common.load_config(tmp_path) == tmp_path / ".mcmp" / "mcmp.env"  # the working folder's is
    assert os.environ["MCMP_SIM_MARK"] == "from-file"


def test_mcmp_config_names_the_file_from_anywhere(shell, tmp_path: Path) -> None:
    path = _dev_file(tmp_path / "stack")
    shell.setenv("MCMP_CONFIG", str(path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert common.load_config(elsewhere) == path and os.environ["MCMP_SIM_MARK"] == "from-file"


def test_only_mcmp_variables_of_the_file_are_honoured(shell, tmp_path: Path, capsys) -> None:
    shell.setenv("PATH", os.environ["PATH"])  # restored after the test whatever happens
    shell.delenv("LD_PRELOAD", raising=False)
    shell.delenv("PYTHONPATH", raising=False)
    _dev_file(
        tmp_path,
        "export LD_PRELOAD='/tmp/evil.so'\nexport PYTHONPATH='/tmp/evil'\nPATH='/tmp/evil:/usr/bin'\n"
        "export MCMP_TEST_ONLY_PATH='kept'\n",
    )
    before = os.environ["PATH"]
    common.load_config(tmp_path)
    assert "LD_PRELOAD" not in os.environ and "PYTHONPATH" not in os.environ
    assert os.environ["PATH"] == before
    assert os.environ["MCMP_TEST_ONLY_PATH"] == "kept" and os.environ["MCMP_SIM_MARK"] == "from-file"
    err = capsys.readouterr().err
    assert "only MCMP_* variables are read; ignored LD_PRELOAD, PYTHONPATH, PATH" in err


@pytest.fixture
def modes_seen(tmp_path: Path) -> Iterator[dict[str, set[int]]]:
    """Every permission a file under ``tmp_path`` had at any file-system call of this process.

    An audit hook runs before each ``open``, ``os.chmod``, ``os.rename``/``replace`` and ``os.remove``:
    a file written first and chmod-ed after is seen with its first mode at the chmod.
    """
    seen: dict[str, set[int]] = {}
    active = [True]
    events = {"open", "os.chmod", "os.rename", "os.replace", "os.remove", "os.listdir"}

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not active[0] or event not in events:
            return
        active[0] = False  # the scan below makes file-system calls of its own
        try:
            for entry in os.scandir(tmp_path):
                if entry.is_file(follow_symlinks=False):
                    seen.setdefault(entry.name, set()).add(stat.S_IMODE(entry.stat().st_mode))
        finally:
            active[0] = True

    old_umask = os.umask(0o022)  # the usual umask: a plain write creates 0644
    sys.addaudithook(hook)
    try:
        yield seen
    finally:
        active[0] = False  # audit hooks cannot be removed; this one goes quiet
        os.umask(old_umask)


def test_secret_files_are_never_readable_by_others(modes_seen: dict[str, set[int]], tmp_path: Path) -> None:
    common.write_config(tmp_path / "mcmp.env", {"MCMP_TOKEN_KEYS": "k" * 44})
    dev._secret_file(tmp_path / "token.key", lambda: "k" * 44)
    for name in ("mcmp.env", "token.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    # every file that ever existed here, temporary ones included, was 0600 whenever looked at
    assert modes_seen and all(modes == {0o600} for modes in modes_seen.values()), modes_seen
    common.write_private(tmp_path / "demo-api.key", "mcmp_demo\n")
    common.write_private(tmp_path / "demo-api.key", "mcmp_demo_again\n")  # replaced, still private
    assert (tmp_path / "demo-api.key").read_text() == "mcmp_demo_again\n"
    assert all(modes == {0o600} for modes in modes_seen.values()), modes_seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-api.key", "mcmp.env", "token.key"]
