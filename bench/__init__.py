"""Doorstep's benchmark: the bare framework's ceiling, the entry decision and the whole
software path to a verified unlock, measured in one run on this machine.

`python -m bench` (or `scripts/bench`) runs everything and writes
`bench/reports/<UTC timestamp>.json/.md` and `bench/reports/latest.json/.md`.
See bench/README.md for what each figure means.
"""
