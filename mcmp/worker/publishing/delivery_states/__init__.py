"""The delivery state machine: the ONLY code that writes ``Delivery.state``.

Every transition is one conditional update whose filter states the expected prior state (and,
for a worker's attempt, its ``attemptId``), so concurrent dispatchers, redelivered Celery
messages and retries from Flower can never move a delivery twice::

    pending ──claim_ids──▶ queued ──start_attempt──▶ in_flight ──complete_op──▶ published
       ▲  ▲                   │                         │ ├──fail_op──────────▶ failed
       │  └────reap (lease)───┘                         │ ├──wait_for_auth_op─▶ waiting_auth ─resume─▶ pending
       └──────retry_op / defer / reap (lease)───────────┘ ├──cancel_op────────▶ cancelled
                                                          └──cancel_unstarted─▶ cancelled (born, not started)
    pending / queued ──park_for_auth (the account's token was rejected)──▶ waiting_auth
    ensure (within the tenant's share) ──▶ in_flight, born taken: started by ``start_born`` (no write)
    pending ──claim_taken (a first attempt)──▶ in_flight, taken as at birth (``start_born`` too)

``needsReconcile`` is set *before* a platform call (with a new ``attemptId``) and cleared only
by a definite outcome, so any crash or ambiguous answer makes the next attempt look the post up
on the platform before posting again.

One module per kind of caller, one import name (``delivery_states.X``):

- :mod:`.claims` — the dispatcher: create, claim, hand back, and what a publish message carries;
- :mod:`.attempts` — a worker taking a delivery for one attempt, or starting one born taken;
- :mod:`.outcomes` — leaving ``in_flight`` (one compare-and-swap on the attempt per transition);
- :mod:`.leases` — the reaper, the lease keeper of running attempts, stranded messages;
- :mod:`.actions` — account events and the admin API (re-auth, cancel — also of a delivery born
  taken that no worker started: its start key is taken first —, reopen, reschedule);
- :mod:`.queries` — reads.

The lease keeper is registered by the process that runs attempts (:func:`register_lease_keeper`,
called from :func:`mcmp.worker.runtime.bootstrap`), not as a side effect of importing this.
"""

from __future__ import annotations

from mcmp.models.delivery import deliveries
from mcmp.worker import liveness
from mcmp.worker.publishing.delivery_states.actions import (
    Unstarted,
    cancel_open,
    cancel_unstarted,
    fail_waiting,
    park_for_auth,
    reopen,
    reschedule_open,
    resume_waiting,
)
from mcmp.worker.publishing.delivery_states.attempts import (
    start_attempt,
    start_batch,
    start_born,
    start_claimed,
)
from mcmp.worker.publishing.delivery_states.claims import (
    CLAIM_FIELDS,
    BatchItem,
    ClaimHint,
    Ensured,
    NewDelivery,
    batch_item,
    born_attempt,
    claim_hint,
    claim_ids,
    claim_taken,
    ensure,
    parse_batch_item,
    unclaim,
)
from mcmp.worker.publishing.delivery_states.leases import (
    extend_leases,
    reap_expired_leases,
    still_owned,
    stranded,
)
from mcmp.worker.publishing.delivery_states.outcomes import (
    Transition,
    apply,
    apply_many,
    cancel_op,
    complete_op,
    fail_op,
    handoff_op,
    note_lookup,
    release_op,
    retry_op,
    wait_for_auth_op,
)
from mcmp.worker.publishing.delivery_states.queries import for_post, for_posts
from mcmp.worker.publishing.delivery_states.store import Taken


def register_lease_keeper() -> None:
    """Let this process's liveness thread extend the leases of the attempts it runs."""
    liveness.keep_leases_with(extend_leases)


__all__ = [
    "CLAIM_FIELDS",
    "BatchItem",
    "ClaimHint",
    "Ensured",
    "NewDelivery",
    "Taken",
    "Transition",
    "Unstarted",
    "apply",
    "apply_many",
    "batch_item",
    "born_attempt",
    "cancel_op",
    "cancel_open",
    "cancel_unstarted",
    "claim_hint",
    "claim_ids",
    "claim_taken",
    "complete_op",
    "deliveries",
    "ensure",
    "extend_leases",
    "fail_op",
    "fail_waiting",
    "for_post",
    "for_posts",
    "handoff_op",
    "note_lookup",
    "parse_batch_item",
    "park_for_auth",
    "reap_expired_leases",
    "register_lease_keeper",
    "release_op",
    "reopen",
    "reschedule_open",
    "resume_waiting",
    "retry_op",
    "start_attempt",
    "start_batch",
    "start_born",
    "start_claimed",
    "still_owned",
    "stranded",
    "unclaim",
    "wait_for_auth_op",
]
