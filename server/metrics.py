"""Prometheus counters, gauges and sums kept in memory, rendered in the text exposition format."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

Labels = tuple[tuple[str, str], ...]
# name -> series -> value: what one process counted, as another process reads it.
Snapshot = dict[str, dict[Labels, float]]

# name -> (type, help); every metric the server exports is declared here.
METRICS = {
    "imagefactory_http_requests_total": ("counter", "HTTP requests by route, method and status"),
    "imagefactory_http_response_bytes_total": ("counter", "HTTP body bytes sent by route"),
    "imagefactory_http_kept_answers_total": ("counter", "answers the fast path sent again as kept"),
    "imagefactory_http_connections": ("gauge", "open HTTP connections"),
    "imagefactory_http_connections_refused_total": ("counter", "connections over the cap"),
    "imagefactory_builds_started_total": ("counter", "on-demand builds started"),
    "imagefactory_builds_succeeded_total": ("counter", "on-demand builds that succeeded"),
    "imagefactory_builds_failed_total": ("counter", "on-demand builds that failed, by reason"),
    "imagefactory_builds_in_flight": ("gauge", "on-demand builds running"),
    "imagefactory_builds_queued": ("gauge", "on-demand builds waiting for a slot"),
    "imagefactory_build_seconds_total": ("counter", "wall time of finished on-demand builds"),
    "imagefactory_tftp_transfers_total": ("counter", "TFTP transfers by result"),
    "imagefactory_tftp_bytes_total": ("counter", "TFTP data bytes sent"),
    "imagefactory_worker_restarts_total": ("counter", "HTTP worker processes started again"),
}


def series_key(name: str, **labels: str) -> Labels:
    """The key of one labelled series of `name`."""
    assert name in METRICS, name
    return tuple(sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self._values: dict[str, dict[Labels, float]] = defaultdict(dict)
        # With several processes: what the others counted, added to this one's on rendering.
        self.peers: Callable[[], Iterable[Snapshot]] | None = None

    def add(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.add_series(name, series_key(name, **labels), float(amount))

    def add_series(self, name: str, key: Labels, amount: float = 1.0) -> None:
        """`add` with the labels as `series_key` made them, for callers that keep the key."""
        series = self._values[name]
        series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values[name][series_key(name, **labels)] = float(value)

    def value(self, name: str, **labels: str) -> float:
        return self._values[name].get(series_key(name, **labels), 0.0)

    def snapshot(self) -> Snapshot:
        return {name: dict(series) for name, series in self._values.items() if series}

    def restore(self, earlier: Snapshot) -> None:
        """Counters carried over from an earlier process in the same place (they never go back)."""
        for name, series in earlier.items():
            if is_counter(name):
                for key, value in series.items():
                    self.add_series(name, key, value)

    def render(self) -> bytes:
        values: Snapshot = self._values
        if self.peers is not None:
            values = summed([self.snapshot(), *self.peers()])
        lines = []
        for name, (kind, help_text) in METRICS.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            series = values.get(name) or {(): 0.0}
            for labels, value in sorted(series.items()):
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                shown = int(value) if value.is_integer() else value
                lines.append(f"{name}{{{text}}} {shown}" if text else f"{name} {shown}")
        return ("\n".join(lines) + "\n").encode()


def is_counter(name: str) -> bool:
    """A counter only grows: it outlives the process that counted (gauges do not)."""
    return METRICS.get(name, ("",))[0] == "counter"


def summed(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Series by series totals: counters and gauges (connections, builds) alike add up."""
    total: Snapshot = defaultdict(dict)
    for snapshot in snapshots:
        for name, series in snapshot.items():
            if name not in METRICS:
                continue
            into = total[name]
            for key, value in series.items():
                into[key] = into.get(key, 0.0) + value
    return total
