"""A logging.Handler that reports records with exception info (and ERROR records) to the agent."""

from __future__ import annotations

import logging

from infrawatch_sdk import _client as C


class LoggingHandler(logging.Handler):
    """Attach to a logger: `logging.getLogger().addHandler(LoggingHandler())`.

    Records carrying exc_info become exceptions; plain ERROR records without an exception become
    exceptions of type `LogError` whose only frame is the logging call site. Module: the record's
    `extra={"module_tag": "payment"}`, else the current request's module, else the logger-name rules,
    else the package rules on the frames. An exception already reported by the web middleware is not
    reported twice.
    """

    def __init__(self, level: int = logging.ERROR, client: C.Client | None = None) -> None:
        super().__init__(level)
        self.client = client

    def emit(self, record: logging.LogRecord) -> None:
        try:
            c = self.client or C._client
            if c is None or record.name.startswith("infrawatch_sdk"):
                return
            module = getattr(record, "module_tag", None) or C.current_module.get() or c.rules.for_logger(record.name)
            if record.exc_info and record.exc_info[1] is not None:
                c.capture_exception(record.exc_info[1], module=module, logger=record.name, auto=True)
                return
            msg = record.getMessage()
            frame = {"file": record.pathname, "line": record.lineno, "function": record.funcName,
                     "module": record.module if record.name == "root" else record.name,
                     "in_app": C._in_app(record.pathname)}
            stack = f'File "{record.pathname}", line {record.lineno}, in {record.funcName}\nLogError: {msg}'
            c.capture_exception(None, module=module or c.rules.for_package(record.name), logger=record.name,
                                payload={"type": "LogError", "message": msg, "frames": [frame], "stack": stack})
        except Exception:  # noqa: BLE001
            self.handleError(record)
