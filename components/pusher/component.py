"""The pipeline's Pusher: TFX's component, with an executor that does not push the model already serving.

Same inputs, outputs and node id ("Pusher") as TFX's; see executor.py for the one difference.
"""
from __future__ import annotations

from tfx.components.pusher import component as tfx_pusher
from tfx.dsl.components.base import executor_spec

from components.pusher import executor


class Pusher(tfx_pusher.Pusher):
    """TFX's Pusher; a blessed model that the newest version already holds is not pushed again."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
