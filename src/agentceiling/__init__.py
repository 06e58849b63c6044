"""agentceiling: per-request authorization for AI agents."""

__version__ = "0.1.0"
