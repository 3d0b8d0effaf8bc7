"""Drop-folder automation: every IR model dropped in an inbox comes out calibrated, nothing lost.

An inbox is a folder holding a policy file, `calibration.toml` (`policy`): a calibration spec
without `model` and `[output]`, plus a `[drop]` table that says where results go. A model dropped
anywhere below the inbox is taken once it has arrived, keyed by content so it is calibrated exactly
once (`inbox`), calibrated by the job runner (`calibration.jobs`, one worker process per model), and
published as a whole entry in the outbox or, with its reason, in the failed folder (`publish`).

State lives in `INBOX/.int8wb/jobs.sqlite` (the job store plus the drop folder's tables, `state`),
the log in `INBOX/.int8wb/dropfolder.log`; one watcher per inbox (`watcher`) survives restarts.
`int8wb watch INBOX` runs it from the command line; the language server runs it for a workspace
folder that holds a policy.

No editor protocol and no OpenVINO here: the workers import it, the watcher does not.
"""
from .inbox import LOG_NAME
from .policy import POLICY_NAME, DropSettings, Policy, is_inbox, load_policy, policy_path
from .publish import entry_name
from .state import inbox_rows
from .watcher import LOCK_NAME, DropFolder

__all__ = ["DropFolder", "DropSettings", "LOCK_NAME", "LOG_NAME", "POLICY_NAME", "Policy", "entry_name",
           "inbox_rows", "is_inbox", "load_policy", "policy_path"]
