"""Stopping a training run when the cluster asks, without losing the iterations since the last
checkpoint.

Schedulers ask a job to stop with a signal before they kill it: SIGTERM (SLURM on preemption or
``scancel``, Kubernetes on eviction), SIGINT (Ctrl-C), or an early warning chosen by the user
(SLURM's ``--signal=USR1@120`` sends SIGUSR1 two minutes before the time limit). A
:class:`PreemptionGuard` records that such a signal arrived; the checkpoint hook then lets the
current iteration finish, writes its checkpoint and ends the run, and ``tools/train.py`` exits
with :data:`EXIT_RESUME` so that a wrapper script knows to rerun the same command.
"""

from __future__ import annotations

import signal

import torch
from mmengine.dist import all_reduce, get_world_size

# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry".
EXIT_RESUME = 75
STOP_SIGNALS = ("SIGTERM", "SIGINT")


def parse_signal(name: str) -> signal.Signals:
    """``"SIGUSR1"``, ``"USR1"`` or ``"10"`` -> ``signal.SIGUSR1``."""
    text = name.strip().upper()
    if text.isdigit():
        return signal.Signals(int(text))
    try:
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"]
    except KeyError:
        raise ValueError(f"unknown signal {name!r}: give a name such as SIGUSR1") from None


class PreemptionGuard:
    """Catches SIGTERM, SIGINT and ``warning_signal`` while installed.

    The first signal is only recorded (:attr:`received`); a second SIGINT raises
    KeyboardInterrupt at once, for a user who does not want to wait for the checkpoint.
    """

    def __init__(self, warning_signal: str | None = "SIGUSR1") -> None:
        names = [*STOP_SIGNALS, *([warning_signal] if warning_signal else [])]
        self.signals = list(dict.fromkeys(parse_signal(name) for name in names))
        self.received: str | None = None
        self._previous: dict[signal.Signals, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def install(self) -> None:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def received_on_any_rank(self) -> str | None:
        """What asked this run to stop ("received SIGTERM", "another rank received a stop
        signal"), or None. Under torch.distributed every rank must call it at the same point (it
        is a collective)."""
        mine = None if self.received is None else f"received {self.received}"
        if get_world_size() == 1:
            return mine
        flag = torch.tensor([0 if mine is None else 1])
        all_reduce(flag, op="max")
        if not flag.item():
            return None
        return mine or "another rank received a stop signal"
