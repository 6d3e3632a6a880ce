"""Quieting onnxruntime.quantization, whose loggers speak once per call or per node."""

from __future__ import annotations

import contextlib
import logging


@contextlib.contextmanager
def quiet_logger(name: str | None = None, level: int = logging.ERROR):
    """Raise a logger's level (the root logger by default) for the duration of a block.

    The int8 quantizer warns on the root logger once per call ("consider running
    pre-processing"), and the auto search makes dozens of calls; the 4-bit quantizer logs one
    INFO line per node on its own logger."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
