"""Mutants that survive because no test can tell them from the code, each with the reason.

Keyed by mutmut's mutant name (``mutmut show NAME`` prints the change). The names number the
mutations of one function in order, so a change to that function can renumber them: after such
a change, ``make mutate`` lists the survivor again with its diff, to be judged anew.
"""

from __future__ import annotations

EQUIVALENT: dict[str, str] = {}
