"""Shadow replay: captured traffic re-sent to a primary, a candidate and a secondary, and the diff.

- ``run``: ``encore replay`` / ``python -m loadtests.replay`` (``run.main``): reads the capture
  log, replays it to every target at once and prints the report; exit 0 pass, 1 a threshold
  crossed, 2 bad input.
- ``shadow_diff``: the pure comparison, Diffy's noise floor and the verdict.
"""
