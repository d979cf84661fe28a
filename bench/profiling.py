"""Sampling profiles of running worker processes with py-spy, and where their CPU goes.

py-spy attaches from outside (``--nonblocking``: the target is never paused), so the workers run
unmodified; idle threads (blocked in a socket read) are not sampled, so sample counts are
proportional to CPU time. Each sample is attributed to the innermost frame that is not the
standard library: time in ``json`` called by kombu is Celery's, time in ``socket`` called by
pymongo is the database driver's. Install with ``pip install py-spy`` (a binary wheel).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CATEGORIES: dict[str, str] = {
    **dict.fromkeys(("mcmp",), "ours"),
    **dict.fromkeys(("celery", "kombu", "billiard", "vine", "amqp", "redis", "click"), "celery/broker"),
    **dict.fromkeys(("pymongo", "bson", "mongoengine", "gridfs", "dns"), "database driver"),
    **dict.fromkeys(("requests", "urllib3", "charset_normalizer", "idna", "certifi"), "HTTP client"),
}
ORDER = ["ours", "celery/broker", "database driver", "HTTP client", "other libraries", "stdlib only"]


def py_spy_path() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def _package(frame: str) -> str:
    """Top-level package of a py-spy frame ``func (path/to/file.py:123)``."""
    location = frame.rsplit(" (", 1)[-1].rstrip(")")
    path = location.rsplit(":", 1)[0]
    root = str(ROOT) + "/"
    if path.startswith(root):
        path = path[len(root) :]
    elif "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    head = path.lstrip("/").split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head


def category(frames: list[str]) -> tuple[str, str]:
    """(category, package) of the innermost non-stdlib frame of a stack (root first)."""
    for frame in reversed(frames):
        pkg = _package(frame)
        if pkg in CATEGORIES:
            return CATEGORIES[pkg], pkg
        if pkg and pkg not in sys.stdlib_module_names and not pkg.startswith("<"):
            return "other libraries", pkg
    return "stdlib only", ""


@dataclass
class Profile:
    samples: list[tuple[list[str], int]] = field(default_factory=list)

    @classmethod
    def load(cls, paths: list[Path]) -> Profile:
        prof = cls()
        for path in paths:
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                stack, _, count = line.rpartition(" ")
                if stack and count.isdigit():
                    frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
                    prof.samples.append((frames, int(count)))
        return prof

    @property
    def total(self) -> int:
        return sum(n for _, n in self.samples)

    def split(self) -> tuple[Counter[str], Counter[str]]:
        """Samples per category, and per package within 'other libraries'."""
        cats: Counter[str] = Counter()
        others: Counter[str] = Counter()
        for frames, n in self.samples:
            cat, pkg = category(frames)
            cats[cat] += n
            if cat == "other libraries":
                others[pkg] += n
        return cats, others

    def top_self(self, n: int = 15) -> list[tuple[str, int]]:
        """Innermost frames (self time)."""
        counts: Counter[str] = Counter()
        for frames, k in self.samples:
            if frames:
                counts[frames[-1]] += k
        return counts.most_common(n)

    def top_ours(self, n: int = 15) -> list[tuple[str, int]]:
        """Our functions by inclusive time (each counted once per sample)."""
        counts: Counter[str] = Counter()
        for frames, k in self.samples:
            for frame in set(frames):
                if CATEGORIES.get(_package(frame)) == "ours":
                    counts[frame] += k
        return counts.most_common(n)

    def top_call_sites(self, n: int = 15) -> list[tuple[str, int]]:
        """Innermost frame of our code × where the time went below it (which library it waited on)."""
        counts: Counter[str] = Counter()
        for frames, k in self.samples:
            cat, pkg = category(frames)
            site = next(
                (
                    f
                    for f in reversed(frames)
                    if CATEGORIES.get(_package(f)) == "ours" and "mcmp/cli/main.py" not in f
                ),
                None,
            )
            counts[f"{site or '(no frame of ours: ' + cat + ')'} → {pkg or cat}"] += k
        return counts.most_common(n)

    def report(self, cpu_ms_per_delivery: float | None = None, top: int = 15) -> str:
        total = self.total or 1
        cats, others = self.split()
        lines = [f"worker CPU by code (py-spy, {self.total} samples, innermost non-stdlib frame):"]
        for cat in ORDER:
            share = cats.get(cat, 0) / total
            ms = f"  {share * cpu_ms_per_delivery:6.2f} ms/delivery" if cpu_ms_per_delivery else ""
            lines.append(f"  {cat:<16} {share:6.1%}{ms}")
        if others:
            lines.append(
                "  other libraries: " + ", ".join(f"{p} {c / total:.1%}" for p, c in others.most_common(6))
            )
        lines.append(f"top {top} innermost frames (self time):")
        lines += [f"  {c / total:6.1%}  {frame}" for frame, c in self.top_self(top)]
        lines.append(f"top {top} call sites (innermost frame of ours → package the time was spent in):")
        lines += [f"  {c / total:6.1%}  {site}" for site, c in self.top_call_sites(top)]
        lines.append(f"top {top} of our functions (inclusive):")
        lines += [f"  {c / total:6.1%}  {frame}" for frame, c in self.top_ours(top)]
        return "\n".join(lines)


class PySpy:
    """``py-spy record`` on some processes (and their children) until ``stop()``."""

    def __init__(self, pids: list[int], outdir: Path, rate: int = 250) -> None:
        exe = py_spy_path()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        outdir.mkdir(parents=True, exist_ok=True)
        self.paths = [outdir / f"py-spy-{pid}.txt" for pid in pids]
        self.procs = [
            subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--subprocesses",
                    "--nonblocking",
                    "--gil",
                    "--rate",
                    str(rate),
                ]
                + ["--format", "raw", "-o", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, path in zip(pids, self.paths, strict=True)
        ]

    def stop(self) -> Profile:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        return Profile.load(self.paths)
