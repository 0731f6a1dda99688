"""Demo job functions and the producer behind `jobtui demo`: a realistic mix on all four lanes."""

from __future__ import annotations

import random
import threading
import time

from jobengine.dispatch import JobSpec
from jobengine.errors import ResourceError, TemporaryError


def noop() -> None:
    """Does nothing (benchmarks)."""


def send_email(to: str, subject: str) -> str:
    time.sleep(random.uniform(0.01, 0.15))
    if random.random() < 0.10:
        raise TemporaryError(f"SMTP server timed out after {random.randint(5, 30)}s")
    return f"sent to {to}"


def resize_image(image_id: int, width: int) -> dict[str, int]:
    time.sleep(random.uniform(0.05, 0.4))
    if random.random() < 0.08:
        raise ResourceError(f"image worker pool exhausted ({random.randint(8, 16)}/8 busy)")
    return {"image_id": image_id, "width": width}


def charge_card(order_id: int, amount_cents: int) -> str:
    time.sleep(random.uniform(0.02, 0.2))
    if random.random() < 0.05:
        raise ValueError(f"card declined for order {order_id}")
    if random.random() < 0.03:
        raise KeyError(f"customer_{order_id}")
    return f"charged {amount_cents}"


def build_report(report_id: int, seconds: float = 3.0) -> str:
    """A long-running job (over the long-running threshold in the demo config)."""
    time.sleep(seconds)
    return f"report {report_id} built"


def sync_inventory(batch: int) -> int:
    time.sleep(random.uniform(0.05, 0.3))
    if random.random() < 0.10:
        raise TemporaryError("inventory API returned 503")
    return batch


def hang(seconds: float = 3600.0) -> None:
    """A job that gets stuck (the demo's stuck threshold is short)."""
    time.sleep(seconds)


STUCK_TIMEOUT = 2 * 3600
"""The stuck job's own timeout: it outlives its hour of sleep (and the demo), so the default
worker.job_timeout (180 s) does not end it."""


_MIX: list[tuple[float, str, str, str]] = [
    # weight, function, type, priority
    (0.10, "jobengine.demo:charge_card", "payment", "critical"),
    (0.25, "jobengine.demo:send_email", "email", "high"),
    (0.30, "jobengine.demo:resize_image", "image", "normal"),
    (0.25, "jobengine.demo:sync_inventory", "inventory", "low"),
    (0.02, "jobengine.demo:build_report", "report", "normal"),
    (0.08, "jobengine.demo:send_email", "email", "normal"),
]


def random_spec(rng: random.Random, n: int) -> JobSpec:
    """One job of the demo mix; delays are kept short so the demo moves."""
    weights = [m[0] for m in _MIX]
    _, func, job_type, priority = rng.choices(_MIX, weights=weights)[0]
    args: tuple[object, ...]
    if job_type == "payment":
        args = (10_000 + n, rng.randint(100, 50_000))
    elif job_type == "email":
        args = (f"user{n}@example.com", rng.choice(["Welcome", "Invoice", "Password reset"]))
    elif job_type == "image":
        args = (n, rng.choice([320, 640, 1280]))
    elif job_type == "report":
        args = (n, rng.uniform(2.0, 6.0))
    else:
        args = (n,)
    return JobSpec(func, args, type=job_type, priority=priority, delay=rng.choice([0, 0, 0, 1, 2]))


class Producer:
    """Dispatches the demo mix at about `rate` jobs per second in a background thread."""

    def __init__(self, engine: object, rate: float = 8.0, seed: int | None = None) -> None:
        self.engine = engine
        self.rate = rate
        self.rng = random.Random(seed)
        self.dispatched = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-producer", daemon=True)

    def start(self) -> None:
        self.engine.dispatch_many([JobSpec("jobengine.demo:hang", type="stuck-sync", priority="critical",  # type: ignore[attr-defined]
                                           timeout=STUCK_TIMEOUT)])
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            burst = max(0, round(self.rng.gauss(self.rate, self.rate ** 0.5)))
            specs = [random_spec(self.rng, self.dispatched + i) for i in range(burst)]
            try:
                self.engine.dispatch_many(specs)  # type: ignore[attr-defined]
                self.dispatched += len(specs)
            except Exception:  # an outage: keep producing once it is back
                pass
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
