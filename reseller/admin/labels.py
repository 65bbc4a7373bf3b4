"""The words the console shows for stored codes (the stored values stay codes)."""

from __future__ import annotations

from ..models import ActivationStatus, LedgerKind, RentalStatus

STATUS_LABELS: dict[str, str] = {
    ActivationStatus.PENDING: "Buying",
    ActivationStatus.UNKNOWN: "Answer lost, being settled",
    ActivationStatus.ALLOCATED: "Waiting for the SMS",
    ActivationStatus.CODE_RECEIVED: "Code received",
    ActivationStatus.RETRY_WAIT: "Waiting for another SMS",
    ActivationStatus.COMPLETED: "Completed",
    ActivationStatus.CANCELLED: "Cancelled, refunded",
    ActivationStatus.EXPIRED: "Expired, refunded",
    ActivationStatus.FAILED: "Failed, refunded",
}

# A rent's words: its statuses share names with an activation's, not their money (an expired
# or finished rent is not refunded).
RENT_STATUS_LABELS: dict[str, str] = {
    RentalStatus.PENDING: "Renting",
    RentalStatus.UNKNOWN: "Answer lost, being settled",
    RentalStatus.ACTIVE: "Rented",
    RentalStatus.FINISHED: "Finished",
    RentalStatus.CANCELLED: "Cancelled, refunded",
    RentalStatus.EXPIRED: "Ended",
    RentalStatus.FAILED: "Failed, refunded",
}

LEDGER_LABELS: dict[str, str] = {
    LedgerKind.TOPUP: "Credit by an operator",
    LedgerKind.ADJUSTMENT: "Debit by an operator",
    LedgerKind.PURCHASE: "Number bought",
    LedgerKind.REFUND: "Refund",
    LedgerKind.PAYMENT: "Top-up payment",
    LedgerKind.PAYMENT_BONUS: "Top-up bonus",
    LedgerKind.RENT: "Number rented",
    LedgerKind.RENT_EXTENSION: "Rent extended",
    LedgerKind.RENT_REFUND: "Rent refund",
    LedgerKind.PAYMENT_REFUND: "Top-up refunded",
}
