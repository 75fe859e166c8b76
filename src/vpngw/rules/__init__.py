"""Pure validation rules: functions of their inputs only, no database, no I/O.

Each function enforces one documented rule and raises an :class:`vpngw.errors.ApiError`
that names the parameter and the reason. They are tested alone in tests/rules/.
"""
