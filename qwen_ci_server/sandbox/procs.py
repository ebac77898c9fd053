"""Process trees from ``/proc`` (Linux), for killing and for checking nothing is left."""

from __future__ import annotations

import os


def _parents() -> dict[int, int]:
    """pid -> parent pid of every visible process."""
    table: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            table[int(entry)] = int(fields[1])
    return table


def process_tree(root: int) -> set[int]:
    """``root`` and all its descendants that are still alive (zombies excluded)."""
    parents = _parents()
    if root not in parents:
        return set()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found = {root}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return {pid for pid in found if not is_zombie(pid)}


def descendants(root: int | None = None) -> set[int]:
    """Living descendants of ``root`` (default: this process), ``root`` excluded."""
    root = os.getpid() if root is None else root
    return process_tree(root) - {root}


def is_zombie(pid: int) -> bool:
    """True for a process that exited but was not reaped yet (or no longer exists)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")
