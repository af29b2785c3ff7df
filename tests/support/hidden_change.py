"""A notebook whose step ``clean`` changes ``df`` in place through a function taken from a list,
which the analysis does not follow: the runtime's guard catches it (issue 28, item 2). ``peek``
comes before it (it must see the unchanged frame), ``stats`` and ``report`` after it. Shared by
tests/test_guard_recovery.py and e2e/tests/test_guard_cluster.py."""

from __future__ import annotations

CELLS = [
    "#| step: load\nimport pandas as pd\ndf = pd.DataFrame({'x': [1, 2, 3]})\n"
    "def add_total(frame):\n    frame['total'] = frame['x'].sum()",
    "#| step: peek\nprint('before', list(df.columns))",
    "#| step: clean\nfixes = [add_total]\nfor f in fixes:\n    f(df)",
    "#| step: stats\nprint('width', df.shape[1])",
    "#| step: report\nprint(list(df.columns), int(df['total'].iloc[0]))",
]
#: what ``report`` prints when it sees the changed frame, as the notebook does
REPORT = "['x', 'total'] 6"
