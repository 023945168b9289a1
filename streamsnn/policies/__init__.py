"""Exit policies (is this prediction final?) and reset policies (clear the state now?), each
registered by name with its options (``EXIT_POLICIES``, ``RESET_POLICIES``)."""

from streamsnn.policies.exit import (
    EXIT_POLICIES,
    ConfidenceExitConfig,
    DeadlineExitConfig,
    DynamicConfidenceExitConfig,
    ExitPolicy,
    FixedExitConfig,
    OracleExitConfig,
)
from streamsnn.policies.policy_net import PolicyNetExitConfig
from streamsnn.policies.reset import (
    RESET_POLICIES,
    DecayResetConfig,
    OnExitResetConfig,
    PeriodicResetConfig,
    ResetPolicy,
)

__all__ = [
    "EXIT_POLICIES",
    "RESET_POLICIES",
    "ConfidenceExitConfig",
    "DeadlineExitConfig",
    "DecayResetConfig",
    "DynamicConfidenceExitConfig",
    "ExitPolicy",
    "FixedExitConfig",
    "OnExitResetConfig",
    "OracleExitConfig",
    "PeriodicResetConfig",
    "PolicyNetExitConfig",
    "ResetPolicy",
]
