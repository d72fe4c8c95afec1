"""The admission queue's decisions, without I/O: what to send to Globus next, and when.

Globus limits each user to 100 unfinished ("pending") tasks and about 20 requests/s
(docs.globus.org/api/transfer/task_behavior; the rate as quoted in Globus's FAQ, see
/work/shared/GLOBUS_BEHAVIOUR.md). Beyond them it refuses a submit (409
``PendingTasksLimitExceeded``, 429 ``RequestLimitExceeded``). The daemon does not pass these
refusals on: every submit goes through one *lane* per session, in order, and this core decides
for each lane how many of its submits may go out now.

A lane may send when all of these hold:

- **capacity**: fewer than ``max_pending`` of the session's tasks are unfinished in the ledger,
  counting the sends in flight (the poller's task_state_changed events free a place);
- **not blocked**: after a 409 the lane joins the back of the blocked lanes' order. The
  limit is per Globus user and sessions may share one, so blocked lanes probe in rounds:
  when a task of *any* session finishes or ``probe_interval`` passed, each blocked lane in
  order sends one submit, one probe at a time, until one is accepted. The winner goes to the
  back of the order (or, the only lane waiting, is unblocked and sends by its own count) and
  a new round starts at once; refused lanes keep their places, so the next free place goes
  to the next lane in order. A winner that was the first to probe in its round sits that
  next round out: when places free one at a time, the others' probes in it are refused just
  before the next place frees, and the winner probing last would take that place too, round
  after round. A winner that was accepted after others were refused in its round (Globus
  had room for it, not for them: in fact different users) probes in the next round too, so
  no lane waits for another user's limit longer than a round (the price: one refused probe
  of the others per submit of the lane that has room, until their users have room or their
  queues are empty). After a 429 the lane
  waits the ``Retry-After``; after a failure without an answer (timeout, 5xx) it backs off
  doubling up to ``max_backoff``;
- **pace**: at most ``rate`` sends in any ``rate_window`` seconds, under Globus's own rate.

Submits a lane cannot send for capacity or a block are *queued* (the shell records
``submit_queued`` and answers ``QUEUED``); those waiting only for their pace slot stay
*waiting* (the client's request is held for well under a second per submit ahead of it).
Lanes are served round-robin, one submit per lane per round, so one session's burst cannot
hold back another's. Time is passed in; nothing here sleeps.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field

from ..errors import QueueFull

__all__ = ["AdmissionCore", "AdmissionLimits", "Item", "Outcome", "Plan"]


class Outcome(enum.Enum):
    """What Globus made of one send."""

    ACCEPTED = "accepted"  # a task exists (Accepted or Duplicate)
    LIMITED = "limited"  # 409: too many pending tasks; nothing was created
    THROTTLED = "throttled"  # 429 after the SDK's own retries; nothing was created
    UNANSWERED = "unanswered"  # timeout / 5xx: Globus may or may not have it
    FAILED = "failed"  # a definitive refusal: recorded as failed, leaves the lane
    NO_CREDENTIAL = "no_credential"  # the session's credential stopped working


@dataclass(frozen=True, kw_only=True)
class AdmissionLimits:
    max_pending: int = 100
    max_queued: int = 10_000
    rate: float = 18.0
    rate_window: float = 1.0
    probe_interval: float = 5.0
    max_backoff: float = 60.0

    def __post_init__(self) -> None:
        if self.max_pending < 1 or self.max_queued < 1:
            raise ValueError("max_pending and max_queued must be at least 1")
        if self.rate < 0 or self.rate_window <= 0 or self.probe_interval <= 0:
            raise ValueError("rate must be >= 0 (0: unpaced), rate_window and probe_interval > 0")


@dataclass(eq=False)
class Item:
    """One submit in a lane; ``queued``: recorded as queued in the ledger."""

    submission_id: str
    queued: bool = False
    order: int = 0  # set by add(): the lane's order, kept when a send comes back
    # Globus may have it (a send went unanswered, or it was pending at start-up): it is
    # never recorded as queued, only resent with the same submission_id.
    maybe_sent: bool = False


@dataclass(frozen=True)
class Plan:
    """What the shell does now: record these as queued, send those (in this order), and
    ask again at ``wake_at`` (None: only when something happens)."""

    queue: list[tuple[str, Item, str]]  # (session_id, item, why): why it cannot go now
    send: list[tuple[str, Item]]
    wake_at: float | None


@dataclass(eq=False)
class _Lane:
    session_id: str
    items: collections.deque[Item] = field(default_factory=collections.deque)
    # Submits in ``items`` neither queued nor possibly sent: those plan() may record queued.
    fresh: dict[str, Item] = field(default_factory=dict)
    inflight: dict[str, Item] = field(default_factory=dict)
    open_tasks: int = 0
    usable: bool = False  # until the session has a credential (set_usable)
    blocked: bool = False  # by a 409, until a probe is accepted
    not_before: float = 0.0  # after a 429 or an unanswered send
    not_before_reason: str = ""
    blocked_reason: str = ""
    backoff: float = 0.0
    sends: collections.deque[float] = field(default_factory=collections.deque)


class AdmissionCore:
    def __init__(self, limits: AdmissionLimits | None = None) -> None:
        self.limits = limits or AdmissionLimits()
        self._lanes: dict[str, _Lane] = {}
        self._order: collections.deque[str] = collections.deque()  # round-robin rotation
        self._where: dict[str, str] = {}  # submission_id -> session_id, items and inflight
        self._added = 0
        # Lanes blocked by a 409, in the order they take turns probing; one probe at a time.
        self._probe_order: collections.deque[str] = collections.deque()
        self._probing: str | None = None  # the submission id of the probe in flight
        self._probe_ready = False  # a task finished since the last round ended
        self._probe_at = 0.0  # ... or this time passed
        self._round: list[str] | None = None  # lanes still to probe in the current round
        self._round_refused = False  # a probe of the current round was refused
        self._sit_out: str | None = None  # the last winner, left out of the next round

    # -- bookkeeping ---------------------------------------------------------------------

    def _lane(self, session_id: str) -> _Lane:
        lane = self._lanes.get(session_id)
        if lane is None:
            lane = self._lanes[session_id] = _Lane(session_id)
            self._order.append(session_id)
        return lane

    def __contains__(self, submission_id: object) -> bool:
        return submission_id in self._where

    def size(self, session_id: str) -> int:
        lane = self._lanes.get(session_id)
        return 0 if lane is None else len(lane.items) + len(lane.inflight)

    def queued(self, session_id: str) -> list[str]:
        """Submission ids of the lane's waiting submits, in the order they will be sent."""
        lane = self._lanes.get(session_id)
        return [] if lane is None else [item.submission_id for item in lane.items]

    def in_flight(self, submission_id: str) -> bool:
        session_id = self._where.get(submission_id)
        return session_id is not None and submission_id in self._lanes[session_id].inflight

    def check_room(self, session_id: str) -> None:
        """Raise QueueFull (429) when the session may not add another submit."""
        if self.size(session_id) >= self.limits.max_queued:
            raise QueueFull(session_id=session_id, limit=self.limits.max_queued)

    def add(self, session_id: str, item: Item) -> None:
        """Append a submit to the session's lane (after its submit_requested is recorded)."""
        if item.submission_id in self._where:
            raise ValueError(f"submission {item.submission_id} is already in the queue")
        self._added += 1
        item.order = self._added
        lane = self._lane(session_id)
        lane.items.append(item)
        if not item.queued and not item.maybe_sent:
            lane.fresh[item.submission_id] = item
        self._where[item.submission_id] = session_id

    def remove(self, submission_id: str) -> Item | None:
        """Take a queued submit out of its lane (a cancel); None when it is not queued (absent,
        being sent, or possibly sent already)."""
        session_id = self._where.get(submission_id)
        if session_id is None:
            return None
        lane = self._lanes[session_id]
        for item in lane.items:
            if item.submission_id == submission_id and item.queued and not item.maybe_sent:
                lane.items.remove(item)
                lane.fresh.pop(submission_id, None)
                del self._where[submission_id]
                return item
        return None

    def set_open_tasks(self, session_id: str, count: int) -> None:
        self._lane(session_id).open_tasks = max(0, count)

    def task_opened(self, session_id: str) -> None:
        self._lane(session_id).open_tasks += 1

    def task_finished(self, session_id: str) -> None:
        """A task of ``session_id`` ended: a place freed there, and every blocked lane may probe
        (sessions may share one Globus user and so one pending limit)."""
        lane = self._lane(session_id)
        lane.open_tasks = max(0, lane.open_tasks - 1)
        self._probe_ready = True

    def set_usable(self, session_id: str, usable: bool) -> None:
        lane = self._lane(session_id)
        lane.usable = usable
        if usable:
            lane.not_before = 0.0
            lane.backoff = 0.0

    def drop_lane(self, session_id: str) -> None:
        """Forget a closed session (its submits stay recorded in the ledger)."""
        lane = self._lanes.pop(session_id, None)
        if lane is None:
            return
        self._order.remove(session_id)
        if session_id in self._probe_order:
            self._probe_order.remove(session_id)
        if self._round is not None and session_id in self._round:
            self._round.remove(session_id)
        if self._sit_out == session_id:
            self._sit_out = None
        for item in (*lane.items, *lane.inflight.values()):
            self._where.pop(item.submission_id, None)

    # -- decisions -----------------------------------------------------------------------

    def _room(self, lane: _Lane, now: float) -> int:
        """Submits the lane may send now, ignoring the pace."""
        if not lane.usable or now < lane.not_before:
            return 0
        if lane.blocked:
            # One probe at a time, from the lane whose turn it is, when a task finished
            # somewhere or the timer ran out.
            turn = self._turn(now) == lane.session_id
            return 1 if turn and self._probing is None and not lane.inflight else 0
        return max(0, self.limits.max_pending - lane.open_tasks - len(lane.inflight))

    def _able(self, session_id: str, now: float) -> bool:
        lane = self._lanes[session_id]
        return bool(lane.items) and lane.usable and now >= lane.not_before

    def _turn(self, now: float) -> str | None:
        """The blocked lane whose turn it is to probe in the current round."""
        for session_id in self._round or ():
            if self._able(session_id, now):
                return session_id
        return None

    def _start_round(self, now: float) -> None:
        if self._round is not None or self._probing is not None:
            return
        if not (self._probe_ready or now >= self._probe_at):
            return
        able = [session_id for session_id in self._probe_order if self._able(session_id, now)]
        # The last winner sits this round out unless no other lane could probe in it.
        able = [session_id for session_id in able if session_id != self._sit_out] or able
        self._sit_out = None
        if able:
            self._round = able
            self._round_refused = False
            self._probe_ready = False

    def _next_in_round(self, session_id: str, now: float) -> None:
        """A probe was not accepted: the next lane of the round tries, or the round ends."""
        if self._round is not None and session_id in self._round:
            self._round.remove(session_id)
        if self._round is None or self._turn(now) is None:
            self._end_round(now)

    def _end_round(self, now: float) -> None:
        self._round = None
        self._probe_ready = False
        self._probe_at = now + self.limits.probe_interval

    def _why(self, lane: _Lane, now: float) -> str:
        """Why the lane's submits wait (recorded with submit_queued)."""
        if not lane.usable:
            return "CredentialMissing"
        if now < lane.not_before:
            return lane.not_before_reason
        if lane.blocked:
            return lane.blocked_reason
        return "PendingTasksLimit"  # our own count of the session's unfinished tasks

    def _pace(self, lane: _Lane, now: float) -> int:
        """Sends the pace allows now."""
        if self.limits.rate <= 0:
            return len(lane.items)
        window = self.limits.rate_window
        while lane.sends and lane.sends[0] <= now - window:
            lane.sends.popleft()
        allowed = max(1, int(self.limits.rate * window))
        return max(0, allowed - len(lane.sends))

    def plan(self, now: float) -> Plan:
        """Decide what happens now: which submits go out (marked in flight) and which are
        recorded as queued."""
        self._start_round(now)
        to_queue: list[tuple[str, Item, str]] = []
        budgets: dict[str, int] = {}
        for session_id in self._order:
            lane = self._lanes[session_id]
            room = self._room(lane, now)
            budgets[session_id] = min(room, self._pace(lane, now), len(lane.items))
            # What cannot go for capacity or a block is queued; what waits only for its
            # pace slot stays held. Records happen once per submit, so only the lane's
            # fresh submits (new, or back from a refused send) are looked at.
            if lane.fresh:
                left = len(lane.fresh)
                for index, item in enumerate(lane.items):
                    if item.submission_id not in lane.fresh:
                        continue
                    left -= 1
                    if index >= room:
                        item.queued = True
                        del lane.fresh[item.submission_id]
                        to_queue.append((session_id, item, self._why(lane, now)))
                    if left == 0:
                        break
        sends: list[tuple[str, Item]] = []
        first_served: str | None = None
        while any(budgets.values()):
            for session_id in list(self._order):
                if budgets.get(session_id, 0) <= 0:
                    continue
                lane = self._lanes[session_id]
                item = lane.items.popleft()
                lane.fresh.pop(item.submission_id, None)
                lane.inflight[item.submission_id] = item
                if lane.blocked:
                    self._probing = item.submission_id
                if self.limits.rate > 0:
                    lane.sends.append(now)
                budgets[session_id] -= 1
                sends.append((session_id, item))
                if first_served is None:
                    first_served = session_id
        if first_served is not None:
            # The next plan starts with the lane after the one served first now.
            while self._order[0] != first_served:
                self._order.rotate(-1)
            self._order.rotate(-1)
        return Plan(queue=to_queue, send=sends, wake_at=self._wake_at(now))

    def _wake_at(self, now: float) -> float | None:
        """When a lane with submits left could send again without anything happening."""
        times: list[float] = []
        for lane in self._lanes.values():
            if not lane.items or not lane.usable:
                continue
            if now < lane.not_before:
                times.append(lane.not_before)
            elif lane.blocked:
                if self._room(lane, now) > 0:
                    times.append(now)
                elif self._round is None and self._probing is None:
                    times.append(now if self._probe_ready else max(now, self._probe_at))
            elif self._room(lane, now) > 0 and lane.sends and self.limits.rate > 0:
                times.append(lane.sends[0] + self.limits.rate_window)
        return min(times) if times else None

    def done(
        self,
        submission_id: str,
        outcome: Outcome,
        now: float,
        *,
        retry_after: float = 1.0,
        code: str = "",
    ) -> None:
        """Globus answered a send (or did not): update the lane. A submit that Globus did
        not take goes back to the head of its lane, to keep the order."""
        session_id = self._where.get(submission_id)
        if session_id is None:
            return
        lane = self._lanes[session_id]
        item = lane.inflight.pop(submission_id, None)
        if item is None:
            return
        probe = self._probing == submission_id
        if probe:
            self._probing = None
        if outcome in (Outcome.ACCEPTED, Outcome.FAILED):
            del self._where[submission_id]
            lane.backoff = 0.0
            if outcome is Outcome.ACCEPTED and lane.blocked:
                # Globus had room. While other lanes wait too, the place was contended: the
                # winner takes its one submit and goes to the back of the order. Alone, it
                # goes on by its own count. Either way a new round may start at once.
                if session_id in self._probe_order:
                    self._probe_order.remove(session_id)
                if any(self._able(other, now) for other in self._probe_order):
                    self._probe_order.append(session_id)
                    if probe and not self._round_refused:
                        self._sit_out = session_id
                else:
                    lane.blocked = False
                self._round = None
                self._probe_ready = True
            elif probe:
                self._next_in_round(session_id, now)
            return
        if outcome is Outcome.UNANSWERED:
            item.maybe_sent = True  # Globus may have it: never recorded queued again
        # Back in its place: sends that come back out of order keep the lane's order.
        index = 0
        for index, other in enumerate(lane.items):  # noqa: B007
            if other.order > item.order:
                break
        else:
            index = len(lane.items)
        lane.items.insert(index, item)
        if not item.maybe_sent and not item.queued:
            lane.fresh[item.submission_id] = item
        if outcome is Outcome.LIMITED:
            if probe:
                self._round_refused = True
            lane.blocked = True
            lane.blocked_reason = code or "PendingTasksLimitExceeded"
            if session_id not in self._probe_order:
                self._probe_order.append(session_id)  # newly blocked: at the back
                if self._round is None:
                    self._probe_ready = False
                    self._probe_at = now + self.limits.probe_interval
        elif outcome is Outcome.THROTTLED:
            lane.not_before = max(lane.not_before, now + max(retry_after, 0.0))
            lane.not_before_reason = code or "RequestLimitExceeded"
        elif outcome is Outcome.UNANSWERED:
            lane.backoff = min(self.limits.max_backoff, max(1.0, lane.backoff * 2))
            lane.not_before = now + lane.backoff
            lane.not_before_reason = code or "GlobusUnavailable"
        else:  # NO_CREDENTIAL: wait for the session to be registered again
            lane.usable = False
        if probe:
            self._next_in_round(session_id, now)
