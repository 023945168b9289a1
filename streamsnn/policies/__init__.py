"""Exit policies (is this prediction final?), reset policies (clear the state now?) and gates
(does the input support a decision?), each registered by name with its options
(``EXIT_POLICIES``, ``RESET_POLICIES``, ``GATES``)."""

from streamsnn.policies.exit import (
    EXIT_POLICIES,
    ConfidenceExitConfig,
    DeadlineExitConfig,
    DynamicConfidenceExitConfig,
    ExitPolicy,
    FixedExitConfig,
    OracleExitConfig,
)
from streamsnn.policies.gate import GATES, EventRateGateConfig, Gate, GateState, NoGateConfig
from streamsnn.policies.policy_net import PolicyNetExitConfig
from streamsnn.policies.reset import (
    RESET_POLICIES,
    DecayResetConfig,
    OnExitResetConfig,
    PeriodicResetConfig,
    ResetPolicy,
    StaggeredResetConfig,
)

__all__ = [
    "EXIT_POLICIES",
    "GATES",
    "RESET_POLICIES",
    "ConfidenceExitConfig",
    "DeadlineExitConfig",
    "DecayResetConfig",
    "DynamicConfidenceExitConfig",
    "EventRateGateConfig",
    "ExitPolicy",
    "FixedExitConfig",
    "Gate",
    "GateState",
    "NoGateConfig",
    "OnExitResetConfig",
    "OracleExitConfig",
    "PeriodicResetConfig",
    "PolicyNetExitConfig",
    "ResetPolicy",
    "StaggeredResetConfig",
]
