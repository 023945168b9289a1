"""Exit policies (is this prediction final?) and reset policies (clear the state now?),
each a small protocol, looked up by name."""

from streamsnn.policies.exit import EXIT_POLICIES, ExitPolicy, make_exit_policy
from streamsnn.policies.reset import RESET_POLICIES, ResetPolicy, make_reset_policy

__all__ = [
    "EXIT_POLICIES",
    "RESET_POLICIES",
    "ExitPolicy",
    "ResetPolicy",
    "make_exit_policy",
    "make_reset_policy",
]
