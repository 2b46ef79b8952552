"""streamq: a job-queue engine for Python built directly on Redis Streams."""

from streamq.config import RedisSettings, Settings
from streamq.errors import (
    AuthenticationFailedError,
    ConfigError,
    ConnectionFailedError,
    DurabilityError,
    InvalidStateError,
    JobNotFoundError,
    PayloadError,
    PermanentJobError,
    QueueFullError,
    RateLimited,
    RetryJobError,
    ScriptError,
    ServerError,
    StreamQError,
    WaitTimeoutError,
)
from streamq.job import Backoff, Job, JobOptions, JobState
from streamq.producer import AsyncProducer, JobSpec, Producer
from streamq.results import DeadEntry, EnqueueResult, QueueStatus

__version__ = "0.1.0"

__all__ = [
    "AsyncProducer",
    "AuthenticationFailedError",
    "Backoff",
    "ConfigError",
    "ConnectionFailedError",
    "DeadEntry",
    "DurabilityError",
    "EnqueueResult",
    "InvalidStateError",
    "Job",
    "JobNotFoundError",
    "JobOptions",
    "JobSpec",
    "JobState",
    "PayloadError",
    "PermanentJobError",
    "Producer",
    "QueueFullError",
    "QueueStatus",
    "RateLimited",
    "RedisSettings",
    "RetryJobError",
    "ScriptError",
    "ServerError",
    "Settings",
    "StreamQError",
    "WaitTimeoutError",
    "__version__",
]
