"""infrawatch: the command-line entry point tying agent, collector and alerting together."""

__version__ = "0.1.0"
