"""Named kill points: make a process die at a chosen step, for crash tests.

Responsibilities:
- read the environment variable ``ZAPNB_KILL_AT`` once, on the first kill point reached;
- end the process with ``os._exit(137)`` (no cleanup, no flush, like ``SIGKILL``) at the named step.

The value is a step name such as ``log.after_write_before_fsync``, optionally followed by ``@N`` to die on the
N-th time that step is reached (``log.after_fsync@3``). With the variable unset a kill point costs two global
reads, so storage code calls :func:`kill_point` freely on its hot paths.

Examples
--------
>>> from zapnb.faults import kill_point
>>> kill_point("log.after_fsync")  # the variable is unset here: nothing happens
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

ENV_VAR: Final = "ZAPNB_KILL_AT"
EXIT_CODE: Final = 137

_loaded = False
_target: str | None = None
_remaining = 0


def kill_point(name: str, before_exit: Callable[[], object] | None = None) -> None:
    """End the process at once if ``ZAPNB_KILL_AT`` names this step.

    Parameters
    ----------
    name:
        The step, as ``module.what_just_happened`` (for example ``log.after_write_before_fsync``).
    before_exit:
        Called just before the process ends, to leave a half-done state behind (for example a record
        written only halfway). Not called when the process goes on.

    Examples
    --------
    >>> kill_point("checkpoint.after_manifest")
    """
    if _loaded and _target is None:
        return
    if not _loaded:
        reload()
    if name != _target:
        return
    global _remaining
    _remaining -= 1
    if _remaining > 0:
        return
    if before_exit is not None:
        before_exit()
    os._exit(EXIT_CODE)


def reload() -> None:
    """Read ``ZAPNB_KILL_AT`` again (the first :func:`kill_point` does it once by itself).

    Examples
    --------
    >>> reload()
    >>> armed_step() is None
    True
    """
    global _loaded, _target, _remaining
    value = os.environ.get(ENV_VAR) or None
    count = 1
    if value is not None and "@" in value:
        value, _, number = value.rpartition("@")
        count = int(number) if number.isdigit() and int(number) > 0 else 1
    _target, _remaining, _loaded = value, count, True


def armed_step() -> str | None:
    """The step this process will die at, or ``None`` when no kill point is armed.

    Examples
    --------
    >>> armed_step() is None
    True
    """
    if not _loaded:
        reload()
    return _target
