"""OmniMind's online learning core: pure (no I/O, no clock), seeded randomness.

Seed API: ``OnlineLearningSystem``, ``OnlineSGDLearner``, ``PrioritizedReplayBuffer``,
``ConceptDriftDetector``, ``ModelVersionManager``.
"""

from . import preprocessing as preprocessing
from .base import DriftMethod
from .challenger import ChallengerGate, GateDecision
from .checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from .cusum import CusumDriftMethod
from .drift import DRIFT_METHODS, ConceptDriftDetector
from .errors import InvalidFeedback
from .online import OnlineSGDConfig, OnlineSGDLearner, StepResult
from .prequential import PrequentialMetrics
from .replay import PrioritizedReplayBuffer, ReplayBatch
from .river_drift import RiverDriftMethod
from .sumtree import SumTree
from .events import DriftEvent, ObserveResult
from .system import OnlineLearningSystem
from .trainer import ContinuousTrainer, ModelUpdateManager, RetrainOutcome
from .versions import ModelVersion, ModelVersionManager

__all__ = [
    "ChallengerGate",
    "GateDecision",
    "ConceptDriftDetector",
    "ContinuousTrainer",
    "ModelUpdateManager",
    "RetrainOutcome",
    "CusumDriftMethod",
    "DRIFT_METHODS",
    "DriftEvent",
    "DriftMethod",
    "InvalidFeedback",
    "ModelVersion",
    "ModelVersionManager",
    "ObserveResult",
    "OnlineLearningSystem",
    "OnlineSGDConfig",
    "OnlineSGDLearner",
    "PrequentialMetrics",
    "PrioritizedReplayBuffer",
    "ReplayBatch",
    "RiverDriftMethod",
    "StepResult",
    "SumTree",
    "flatten_state",
    "load_checkpoint",
    "save_checkpoint",
    "unflatten_state",
]
