"""The emulator under abuse and load: hostile code runs at the same time as normal
requests, which keep being served; requests cannot read each other's files; after many
requests no kernel or child process is left and memory stays flat.

``make soak`` runs the long variant (SOAK_REQUESTS=500)."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qwen_ci_server.emulator import Emulator
from qwen_ci_server.sandbox import Limits
from qwen_ci_server.sandbox.procs import descendants
from tests.emulator.conftest import KEY, ask, leftovers, running

SOAK_REQUESTS = int(os.environ.get("SOAK_REQUESTS", "40"))
LIMITS = Limits(timeout=3, interrupt_grace=1, memory=1 << 30, cpu=60, output=20_000)

ABUSE = {
    "loop": "while True:\n    pass",
    "memory": "data = bytearray(4 * 1024**3)",
    "fork bomb": "import os\nwhile True:\n    os.fork()",
    "network": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)",
    "file escape": "open('/usr/qwen-ci-escape.txt', 'w').write('x')",
    "huge output": "print('x' * (50 * 1024 * 1024))",
}
NORMAL = {
    "What is 2**10?": "1024",
    "What is 123 to the power of 21?": "77269364466549865653073473388030061522211723",
    "What is 10 factorial?": "3628800",
    "123的21次方是多少？": "77269364466549865653073473388030061522211723",
}


def fenced(code: str) -> str:
    return f"Run this:\n```python\n{code}\n```"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def emu() -> Emulator:
    with running(api_key=KEY, pool_size=2, limits=LIMITS) as emulator:
        emulator.wait_warm()
        yield emulator  # type: ignore[misc]


def needs_bwrap(emu: Emulator) -> None:
    if emu.pool.isolation is None or emu.pool.isolation.mode != "bwrap":
        pytest.skip("bubblewrap isolation is not available here (rlimits only)")


def test_abuse_and_normal_requests_at_the_same_time(emu: Emulator) -> None:
    if os.geteuid() == 0:
        needs_bwrap(emu)  # as root without bwrap RLIMIT_NPROC does not stop a fork bomb
    jobs = [(name, fenced(code)) for name, code in ABUSE.items()]
    jobs += [(prompt, prompt) for prompt in NORMAL] * 2
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = dict(zip([id(j) for j in jobs],
                           pool.map(lambda job: ask(emu, job[1]), jobs), strict=True))
    for job in jobs:
        result = results[id(job)]
        if job[0] in NORMAL:
            assert NORMAL[job[0]] in result.text, (job[0], result.text)
        else:
            assert result.code_runs, job[0]
            assert re.search(r"Error|error|rror:|omitted", result.text), (job[0], result.text)
    assert "1024" in ask(emu, "What is 2**10?").text
    assert leftovers() == set()


def test_requests_cannot_read_each_others_files(emu: Emulator) -> None:
    needs_bwrap(emu)
    first = ask(emu, fenced(
        "import os\nopen('secret.txt', 'w').write('s3cr3t')\nprint(os.path.abspath('secret.txt'))"))
    path = re.search(r"(/\S*secret\.txt)", first.text)
    assert path, first.text
    second = ask(emu, fenced(
        f"import os, glob\nprint(os.path.exists({path.group(1)!r}))\n"
        "print([p for d in ('/workspace', '/tmp', os.getcwd())\n"
        "       for p in glob.glob(d + '/**/secret.txt', recursive=True)])"))
    assert "s3cr3t" not in second.text
    assert "False" in second.text and "[]" in second.text


def test_many_requests_leave_nothing_behind_and_memory_is_flat(emu: Emulator) -> None:
    prompts = [*NORMAL, fenced("x = [0] * 10**6\nprint(len(x))"), fenced("1/0")]

    def one(index: int) -> str:
        return ask(emu, prompts[index % len(prompts)]).text

    with ThreadPoolExecutor(max_workers=4) as pool:
        warmup = SOAK_REQUESTS // 4
        list(pool.map(one, range(warmup)))
        assert leftovers() == set()
        baseline = len(descendants())  # the warm pool's kernels
        before = rss_mb()
        texts = list(pool.map(one, range(warmup, SOAK_REQUESTS)))
        after = rss_mb()
    assert all(texts)
    assert after - before < 60, f"RSS grew from {before:.0f} MB to {after:.0f} MB"
    assert leftovers() == set()
    assert len(descendants()) <= baseline  # only the warm pool's kernels remain
