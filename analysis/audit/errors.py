"""The audit's one error type.

Example:
    >>> issubclass(AuditError, ValueError)
    True
"""

from __future__ import annotations


class AuditError(ValueError):
    """The audit cannot run as asked (bad target, data, or an incompatible run directory)."""
