"""How ``arges`` logs: readable lines by default, or one JSON object per line for collectors."""

from __future__ import annotations

import datetime as dt
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """Each record as one line of JSON: ``time`` (RFC 3339, UTC), ``level``, ``logger``,
    ``message``, and ``exception`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object per line: ``time`` (RFC 3339, UTC, milliseconds), ``level``,
        ``logger``, ``message``, and ``exception`` when there is one."""
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def use_format(kind: str) -> None:
    """Switch every handler of the root logger to ``kind``: text or json."""
    formatter = JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
