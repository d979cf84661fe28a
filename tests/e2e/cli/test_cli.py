"""The ``mcmp`` command as a person meets it: unreachable services, the dev stack's config file."""

from __future__ import annotations

import subprocess
import sys
import time

from mcmp.devstack import free_port

MCMP = [sys.executable, "-m", "mcmp.cli"]
SERVICE_VARS = ("MCMP_MONGODB_URI", "MCMP_REDIS_URL", "MCMP_BROKER_URL", "MCMP_CONFIG")


def _run(args, env, cwd):
    started = time.monotonic()
    done = subprocess.run([*MCMP, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    return done, time.monotonic() - started


def _clean_env(env):
    return {k: v for k, v in env.items() if k not in SERVICE_VARS}


def test_unreachable_mongodb_or_redis_is_one_line_within_5_seconds(env, tmp_path):
    closed = free_port()  # nothing listens there
    mongo_uri = f"mongodb://127.0.0.1:{closed}/mcmp"
    for args in (
        ["apikey", "create", "ci", "--all-tenants"],
        ["apikey", "revoke", "ci"],
        ["tokens", "rotate"],
    ):
        done, seconds = _run(args, {**_clean_env(env), "MCMP_MONGODB_URI": mongo_uri}, tmp_path)
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and done.stdout == "", done
        assert f"cannot reach MongoDB at {mongo_uri}" in lines[0] and "set MCMP_MONGODB_URI" in lines[0]
        assert seconds < 5, f"{args}: {seconds:.1f} s"
    redis_url = f"redis://127.0.0.1:{closed}/0"
    done, seconds = _run(
        ["analytics", "backfill", "--client", "acme"], {**env, "MCMP_REDIS_URL": redis_url}, tmp_path
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done
    assert f"cannot reach Redis at {redis_url}" in lines[0] and "MCMP_REDIS_URL" in lines[0]
    assert seconds < 5


def test_commands_read_the_dev_config_file_of_the_working_directory(env, tmp_path):
    """Only ./.mcmp/mcmp.env (parent folders: tests/unit/cli/test_config_file.py)."""
    data = tmp_path / ".mcmp"
    data.mkdir()
    (data / "mcmp.env").write_text(
        f"export MCMP_MONGODB_URI='{env['MCMP_MONGODB_URI']}'\nexport MCMP_REDIS_URL='{env['MCMP_REDIS_URL']}'\n"
    )
    below = tmp_path  # where `mcmp dev` runs
    done, _ = _run(["apikey", "create", "from-file", "--all-tenants"], _clean_env(env), below)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    from mcmp.api.keys import find_active

    assert find_active(key) is not None  # written to the database named in the file

    # variables set in the shell win: the file is not read at all
    closed = f"mongodb://127.0.0.1:{free_port()}/mcmp"
    done, _ = _run(["apikey", "revoke", "from-file"], {**_clean_env(env), "MCMP_MONGODB_URI": closed}, below)
    assert done.returncode == 2 and closed in done.stderr

    # a file left by a dev stack that is gone: the error says where the URI came from
    (data / "mcmp.env").write_text(f"export MCMP_MONGODB_URI='{closed}'\n")
    done, seconds = _run(["apikey", "revoke", "from-file"], _clean_env(env), below)
    assert done.returncode == 2 and str(data / "mcmp.env") in done.stderr and seconds < 5, done
    assert len(done.stderr.strip().splitlines()) == 1


def test_mcmp_flower_refuses_to_start_without_basic_auth(env, tmp_path):
    open_env = {k: v for k, v in env.items() if k != "MCMP_FLOWER_BASIC_AUTH"}
    for value in (None, "", "ops", "ops:"):
        run_env = dict(open_env, FLOWER_UNAUTHENTICATED_API="true")
        if value is not None:
            run_env["MCMP_FLOWER_BASIC_AUTH"] = value
        done, _ = _run(["flower", "--port", str(free_port())], run_env, tmp_path)
        assert done.returncode == 2 and "MCMP_FLOWER_BASIC_AUTH=user:password" in done.stderr, done
