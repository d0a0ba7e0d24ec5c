"""A logging.Handler that reports records with exception info (and ERROR records) to the agent."""

from __future__ import annotations

import logging

from infrawatch_sdk import _client as C


class LoggingHandler(logging.Handler):
    """Attach to a logger: `logging.getLogger().addHandler(LoggingHandler())`.

    Records carrying exc_info become exceptions (module from the logger name rules); plain ERROR records
    without an exception become exceptions of type `LogError` with the message.
    """

    def __init__(self, level: int = logging.ERROR) -> None:
        super().__init__(level)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            c = C._client
            if c is None or record.name.startswith("infrawatch_sdk"):
                return
            module = getattr(record, "module_tag", None) or C.current_module.get() or c.rules.for_logger(record.name)
            if record.exc_info and record.exc_info[1] is not None:
                c.capture_exception(record.exc_info[1], module=module, logger=record.name)
            else:
                try:
                    raise _LogError(record.getMessage())
                except _LogError as e:
                    c.capture_exception(e, module=module, logger=record.name)
        except Exception:  # noqa: BLE001
            self.handleError(record)


class _LogError(Exception):
    pass


_LogError.__name__ = _LogError.__qualname__ = "LogError"
_LogError.__module__ = "builtins"  # report the type as plain `LogError`
