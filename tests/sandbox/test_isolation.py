"""The bubblewrap command line and the fallback to rlimits only."""

from __future__ import annotations

import json
import os
import sys

import pytest

from qwen_ci_server.sandbox import Limits, detect_isolation
from qwen_ci_server.sandbox import isolation as iso
from qwen_ci_server.sandbox.isolation import Isolation, kernel_command

LIMITS = Limits(memory=512 << 20, processes=50, open_files=199, file_size=1 << 20, cpu=7)
BWRAP = Isolation("bwrap", "test", "/usr/bin/bwrap", supports_size=True)


def command(isolation: Isolation, monkeypatch: pytest.MonkeyPatch, uid: int) -> list[str]:
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    return kernel_command(isolation, LIMITS, connection_file="/tmp/r/run/kernel.json",
                          run_dir="/tmp/r/run", work_dir="/tmp/r/work").argv


def flags(argv: list[str]) -> list[str]:
    return argv[: argv.index("--")]


def launcher_spec(argv: list[str]) -> dict[str, object]:
    spec = json.loads(argv[argv.index(iso.LAUNCHER) + 1])
    assert isinstance(spec, dict)
    return spec


def test_bwrap_command_isolates(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = command(BWRAP, monkeypatch, uid=1000)
    head = flags(argv)
    for flag in ("--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-user",
                 "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in head
    assert head[head.index("--cap-drop") + 1] == "ALL" and "--cap-add" not in head
    pairs = list(zip(head, head[1:], head[2:], strict=False))
    assert ("--ro-bind", "/usr", "/usr") in pairs
    # only the /etc files Python needs, never the whole of /etc
    assert ("--ro-bind", "/etc", "/etc") not in pairs
    etc = {b for a, b, _ in pairs if a == "--ro-bind" and b.startswith("/etc/")}
    assert "/etc/ld.so.cache" in etc and "/etc/shadow" not in etc
    assert ("--bind", "/tmp/r/run", "/tmp/r/run") in pairs  # the sockets, same path
    assert not any(a == "--bind" and b == "/" for a, b, _ in pairs)
    prefix = os.path.realpath(sys.prefix)
    assert ("--ro-bind", prefix, prefix) in pairs or prefix.startswith("/usr/")
    assert head[head.index("--chdir") + 1] == iso.WORKSPACE
    assert head[head.index("--size") + 1] == str(LIMITS.disk)
    env = {head[i + 1]: head[i + 2] for i, a in enumerate(head) if a == "--setenv"}
    assert env["HOME"] == iso.WORKSPACE and "DASHSCOPE_API_KEY" not in env
    spec = launcher_spec(argv)
    assert spec["uid"] is None
    assert spec["rlimits"] == {
        "RLIMIT_AS": [512 << 20, 512 << 20], "RLIMIT_CPU": [7, 12],
        "RLIMIT_NOFILE": [199, 199], "RLIMIT_FSIZE": [1 << 20, 1 << 20],
        "RLIMIT_NPROC": [50, 50], "RLIMIT_CORE": [0, 0],
    }
    assert argv[-4:] == ["-m", "ipykernel_launcher", "-f", "/tmp/r/run/kernel.json"]


def test_bwrap_as_root_runs_the_kernel_as_its_own_user(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = command(BWRAP, monkeypatch, uid=0)
    head = flags(argv)
    assert "--unshare-user" not in head
    assert [head[i + 1] for i, a in enumerate(head) if a == "--cap-add"] == [
        "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"]
    uid = launcher_spec(argv)["uid"]
    assert isinstance(uid, int) and uid >= 200_000
    assert launcher_spec(command(BWRAP, monkeypatch, uid=0))["uid"] != uid


def test_parents_of_binds_are_created_traversable(monkeypatch: pytest.MonkeyPatch) -> None:
    head = flags(command(BWRAP, monkeypatch, uid=0))
    dirs = [head[i + 3] for i, a in enumerate(head)
            if a == "--perms" and head[i + 2] == "--dir"]
    assert "/tmp/r" in dirs and all(head[head.index(d) - 2] == "0755" for d in dirs)
    # /tmp is mounted before the binds under it
    assert head.index("/tmp") < head.index("/tmp/r/run")


def test_rlimits_only_command(monkeypatch: pytest.MonkeyPatch) -> None:
    none = Isolation("rlimits", "test")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    cmd = kernel_command(none, LIMITS, connection_file="c.json", run_dir="/r", work_dir="/w")
    assert cmd.argv[0] == sys.executable and "bwrap" not in " ".join(cmd.argv)
    assert cmd.cwd == "/w" and cmd.env["HOME"] == "/w" and cmd.uid is None
    nproc = launcher_spec(cmd.argv)["rlimits"]["RLIMIT_NPROC"]  # type: ignore[index]
    assert nproc[0] >= 50  # raised by the user's existing processes


def test_missing_bwrap_falls_back_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    iso._detect_bwrap.cache_clear()
    monkeypatch.setattr(iso.shutil, "which", lambda name: None)
    try:
        found = detect_isolation("auto")
        assert found.mode == "rlimits" and "not installed" in found.reason
        assert found.warning is not None and "bubblewrap" in found.warning
        with pytest.raises(RuntimeError, match="required"):
            detect_isolation("bwrap")
    finally:
        iso._detect_bwrap.cache_clear()
    assert detect_isolation("none").mode == "rlimits"
    with pytest.raises(ValueError):
        detect_isolation("docker")


def test_broken_bwrap_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    iso._detect_bwrap.cache_clear()
    fake = os.path.join(str(tmp_path), "bwrap")
    with open(fake, "w") as handle:
        handle.write("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\n"
                     "exit 1\n")
    os.chmod(fake, 0o755)
    monkeypatch.setattr(iso.shutil, "which", lambda name: fake)
    try:
        found = detect_isolation("auto")
        assert found.mode == "rlimits" and "No permissions" in found.reason
    finally:
        iso._detect_bwrap.cache_clear()


def test_bwrap_that_cannot_start_python_falls_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    iso._detect_bwrap.cache_clear()
    fake = os.path.join(str(tmp_path), "bwrap")
    with open(fake, "w") as handle:
        handle.write('#!/bin/sh\ncase "$*" in *"import zmq"*) echo "execvp python: No such '
                     'file" >&2; exit 1;; esac\nexit 0\n')
    os.chmod(fake, 0o755)
    monkeypatch.setattr(iso.shutil, "which", lambda name: fake)
    try:
        found = detect_isolation("auto")
        assert found.mode == "rlimits" and "does not start" in found.reason
    finally:
        iso._detect_bwrap.cache_clear()
