"""#22: both servers' command lines: keys never on a command line, fail closed on every
host, SIGTERM during a run frees everything."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from qwen_ci_server.sandbox import detect_isolation
from qwen_ci_server.sandbox.procs import is_zombie, process_tree

EMULATOR = [sys.executable, "-m", "qwen_ci_server.emulator"]
SERVE = [sys.executable, "-m", "qwen_ci.cli", "serve", "--upstream-base-url",
         "http://127.0.0.1:9/v1", "--upstream-model", "m", "--upstream-check", "off"]
COMPAT = "/compatible-mode/v1/chat/completions"
BWRAP = detect_isolation("auto").mode == "bwrap"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env.update(extra)
    return env


def _start(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    if not match:
        proc.kill()
        pytest.fail(f"did not start: {line}{proc.communicate(timeout=30)[0]}")
    return proc, match.group(1)


@pytest.mark.parametrize("command", [EMULATOR, SERVE], ids=["emulator", "serve"])
def test_a_key_on_the_command_line_is_refused_with_the_way_to_do_it(
    command: list[str]
) -> None:
    done = subprocess.run([*command, "--port", "0", "--api-key", "sk-visible-in-ps"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env=_env())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--api-key-env" in done.stderr and "--api-key-file" in done.stderr
    assert "sk-visible-in-ps" not in done.stderr + done.stdout


@pytest.mark.skipif(not BWRAP, reason="bubblewrap does not work here")
def test_the_emulator_reads_its_key_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-a-file\n")
    key_file.chmod(0o600)
    proc, url = _start([*EMULATOR, "--port", "0", "--pool-size", "0", "--frame-delay", "0",
                        "--api-key-file", str(key_file)], _env())
    try:
        body = {"model": "qwen3-max", "messages": [{"role": "user", "content": "hi"}]}
        wrong = httpx.post(url + COMPAT, json=body, headers={"Authorization": "Bearer sk-x"},
                           timeout=60)
        assert wrong.status_code == 401
        health = httpx.get(url + "/health", timeout=30).json()
        assert "resources" in health and "socket_memory" in health
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_the_emulator_on_loopback_fails_closed_without_bubblewrap(tmp_path: Path) -> None:
    """Finding 4: on 127.0.0.1 the emulator fell back to rlimits (as root: code as uid 0)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = subprocess.Popen([*EMULATOR, "--port", "0", "--pool-size", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(PATH=str(empty)))
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 2, out + err
    assert "bwrap is not installed" in err and "--isolation none" in err


SLEEPER = "- match: sleep\n  code: 'import time; time.sleep(120)'\n  answer: done\n"


@pytest.mark.skipif(not BWRAP, reason="bubblewrap does not work here")
def test_sigterm_during_a_run_frees_everything(tmp_path: Path) -> None:
    """Finding 9: SIGTERM of the emulator left its (empty) parent cgroups behind."""
    script = tmp_path / "s.yaml"
    script.write_text(SLEEPER)
    proc, url = _start([*EMULATOR, "--port", "0", "--pool-size", "1", "--frame-delay", "0",
                        "--script", str(script), "--timeout", "100"], _env())
    body = {"model": "qwen3-max", "messages": [{"role": "user", "content": "sleep"}],
            "stream": True, "enable_thinking": True, "enable_code_interpreter": True}

    def ask() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(url + COMPAT, json=body, headers={"Authorization": "Bearer x"},
                       timeout=120)

    asker = threading.Thread(target=ask, daemon=True)
    try:
        deadline = time.monotonic() + 60
        while httpx.get(url + "/health", timeout=30).json()["warm_kernels"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        asker.start()
        kernels: set[int] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the request took the warm kernel: one more boots
            kernels = process_tree(proc.pid) - {proc.pid}
            if len(_sandboxes(kernels)) >= 2:
                break
            time.sleep(0.1)
        assert len(_sandboxes(kernels)) >= 2
        time.sleep(1.0)  # the run is under way
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _left(proc.pid, kernels):
        time.sleep(0.1)
    assert _left(proc.pid, kernels) == []


def _sandboxes(pids: set[int]) -> set[str]:
    """The sandboxes (a cgroup each, or a process group without cgroups) of ``pids``."""
    found: set[str] = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cgroup", encoding="ascii") as handle:
                groups = re.findall(r"qwen-ci-\d+/(k[\w-]+)", handle.read())
            found.add(groups[0] if groups else f"pgid {os.getpgid(pid)}")
        except (OSError, IndexError):
            continue
    return found


def _left(server: int, kernels: set[int]) -> list[str]:
    alive = [f"pid {p}" for p in kernels if os.path.exists(f"/proc/{p}") and not is_zombie(p)]
    groups = glob.glob(f"/sys/fs/cgroup/*/qwen-ci-{server}") + glob.glob(
        f"/sys/fs/cgroup/**/qwen-ci-{server}", recursive=True)
    dirs = glob.glob(os.path.join(tempfile.gettempdir(), f"qwen-ci-sandbox-{server}-*"))
    return alive + sorted(set(groups)) + dirs


@pytest.mark.skipif(not BWRAP, reason="bubblewrap does not work here")
def test_no_cgroup_is_said_loudly_at_start_and_in_health() -> None:
    """Finding 4: without a writable cgroup hierarchy the emulator's banner and /health
    said nothing, and one request used 997 MiB with --memory-mb 512."""
    proc = subprocess.Popen([*EMULATOR, "--port", "0", "--pool-size", "0",
                             "--frame-delay", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=_env(QWEN_CI_NO_CGROUP="1"))
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        warning = proc.stdout.readline()
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", banner)
        assert match, banner
        assert "no cgroup" in banner and "WARNING" in warning and "no cgroup" in warning
        health = httpx.get(match.group(1) + "/health", timeout=30).json()
        assert health["resources"].startswith("rlimits per process only")
        assert health["socket_memory"].startswith("not bounded")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
