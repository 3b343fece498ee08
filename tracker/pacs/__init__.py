"""The PACS feed (issue 17): imaging studies read from the hospital PACS over
DICOMweb (QIDO-RS headers only, never pixels), stored through the DICOM header
import path, with the feed's position and faults kept in the database."""

from tracker.pacs.feed import PollReport, poll, poll_if_due
from tracker.pacs.settings import PacsSettings
from tracker.pacs.state import PacsFault, PollState, read_state, status_sentences

__all__ = [
    "PacsFault",
    "PacsSettings",
    "PollReport",
    "PollState",
    "poll",
    "poll_if_due",
    "read_state",
    "status_sentences",
]
