"""
Tools for running Rally on a developer's machine; none of it runs in production.

- `devtools.run`: the process manager behind `make run` (honcho, patient on Ctrl-C).
- `devtools.screenshots`: the staff guide's pictures (docs/img/staff/), from a fresh demo database.
"""
