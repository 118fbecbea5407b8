"""Parsing shared by the console, the server and the agent: each rule lives here once.

Pure functions (no I/O, no trio); a bad input raises `InvalidRequest` in plain words,
which the console turns into a usage error and the server into an ERROR frame.
`crontimes` (cron expressions, time zones, fire times), `signals`, `durations`.
"""
