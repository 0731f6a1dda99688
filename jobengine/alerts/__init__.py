"""Notifications through apprise: health changes, failure groups and bursts, stuck jobs, long
waits, dead letters and an unreconciled Redis reset, each alert key at most once per
`[alerts] interval`, with a resolved notice when it clears (README "Alerts").

    from jobengine.alerts import Alerter, AlertTimer
    engine.alerter().run_once()        # one round (under the deployment's alerts lock)
    engine.recent_alerts(20)           # the notices sent, newest first

`checks` is the pure part (reads -> conditions), `state` the Redis part (active keys, the record
of notices), `notify` the apprise part (URLs expanded and masked), `alerter` the round.
"""

from jobengine.alerts.alerter import Alerter, AlertTimer, RoundReport
from jobengine.alerts.checks import Condition, Readings, conditions
from jobengine.alerts.notify import Delivery, Notifier, mask, resolve_urls
from jobengine.alerts.state import AlertRecord, KeyState

__all__ = ["AlertRecord", "AlertTimer", "Alerter", "Condition", "Delivery", "KeyState", "Notifier", "Readings",
           "RoundReport", "conditions", "mask", "resolve_urls"]
