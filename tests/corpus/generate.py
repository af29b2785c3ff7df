"""Writes the test corpus notebooks (run: python tests/corpus/generate.py).

The notebooks are committed; this script is their source of truth, so that the cells stay
readable in review. Each one exercises a split mode and typical scientific code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat import v4

HERE = Path(__file__).parent


def notebook(cells: list[tuple[str, str] | tuple[str, str, list[str]]]) -> nbformat.NotebookNode:
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    for i, entry in enumerate(cells):
        kind, source = entry[0], entry[1]
        tags = entry[2] if len(entry) > 2 else []
        cell = v4.new_markdown_cell(source) if kind == "md" else v4.new_code_cell(source)
        cell["id"] = f"cell-{i}"
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


SALES = notebook(
    [
        (
            "md",
            "# Regional sales analysis\nSynthetic sales data: clean it, summarise it, fit a model.",
        ),
        (
            "code",
            "n_rows = 500\nseed = 7\nregions = ['north', 'south', 'east', 'west']",
            ["parameters"],
        ),
        (
            "code",
            "#| step: load\n%matplotlib inline\nimport numpy as np\nimport pandas as pd\n\n"
            "rng = np.random.default_rng(seed)\n"
            "raw = pd.DataFrame({\n"
            "    'region': rng.choice(regions, size=n_rows),\n"
            "    'units': rng.integers(1, 50, size=n_rows),\n"
            "    'price': rng.normal(20.0, 4.0, size=n_rows).round(2),\n"
            "})\n"
            "raw.loc[rng.integers(0, n_rows, size=10), 'price'] = np.nan\n"
            "print(raw.shape)",
        ),
        (
            "code",
            'def revenue(frame):\n    """Revenue per row."""\n    return frame[\'units\'] * frame[\'price\']\n',
        ),
        (
            "code",
            "#| step: clean\nsales = raw.dropna().copy()\nsales['revenue'] = revenue(sales)\n"
            "sales.to_csv('clean_sales.csv', index=False)\nprint(len(sales), 'rows kept')",
        ),
        (
            "code",
            "#| step: summarize\nby_region = sales.groupby('region')['revenue'].agg(['sum', 'mean'])\n"
            "by_region = by_region.sort_values('sum', ascending=False)\nby_region",
        ),
        (
            "code",
            "#| step: model\nfrom sklearn.linear_model import LinearRegression\n\n"
            "model = LinearRegression()\nmodel.fit(sales[['units']], sales['revenue'])\n"
            "slope = float(model.coef_[0])\nprint(f'slope={slope:.3f}')",
        ),
        (
            "code",
            "#| step: report\nimport matplotlib.pyplot as plt\n\n"
            "fig, ax = plt.subplots()\nby_region['sum'].plot.bar(ax=ax)\nax.set_title(f'slope {slope:.2f}')\n"
            "check = pd.read_csv('clean_sales.csv')\n"
            "summary = {'regions': len(by_region), 'rows': len(check), 'slope': round(slope, 3)}\nsummary",
        ),
    ]
)

KALE = notebook(
    [
        ("md", "# Kale-tagged digits classifier"),
        (
            "code",
            "import numpy as np\nfrom sklearn.datasets import load_digits\n"
            "from sklearn.model_selection import train_test_split",
            ["imports"],
        ),
        (
            "code",
            "def accuracy(y_true, y_pred):\n    return float(np.mean(y_true == y_pred))",
            ["functions"],
        ),
        ("code", "C = 1.0\ntest_size = 0.25", ["pipeline-parameters"]),
        ("code", "digits = load_digits()\nX, y = digits.data, digits.target", ["block:load_data"]),
        ("code", "print(X.shape)"),
        (
            "code",
            "X_train, X_test, y_train, y_test = train_test_split(\n"
            "    X, y, test_size=test_size, random_state=0)",
            ["block:split", "prev:load_data"],
        ),
        (
            "code",
            "from sklearn.svm import SVC\nclf = SVC(C=C, gamma=0.001)\nclf.fit(X_train, y_train)",
            ["block:train", "prev:split"],
        ),
        (
            "code",
            "%%time\npred = clf.predict(X_test)\nacc = accuracy(y_test, pred)",
            ["block:evaluate", "prev:train"],
        ),
        ("code", "print(acc)", ["pipeline-metrics"]),
        ("code", "clf  # only for interactive inspection", ["skip"]),
    ]
)

HEADINGS = notebook(
    [
        ("md", "# Growth curves\nFit logistic growth to noisy measurements."),
        ("code", "import math\nimport numpy as np"),
        ("md", "## Simulate measurements"),
        (
            "code",
            "class Logistic:\n    def __init__(self, k, r, t0):\n        self.k, self.r, self.t0 = k, r, t0\n\n"
            "    def __call__(self, t):\n        return self.k / (1 + np.exp(-self.r * (t - self.t0)))\n",
        ),
        (
            "code",
            "truth = Logistic(10.0, 0.8, 5.0)\nt = np.linspace(0, 10, 50)\n"
            "noise = np.random.default_rng(1).normal(0, 0.2, t.size)\nobserved = truth(t) + noise",
        ),
        ("md", "## Fit"),
        (
            "code",
            "best = None\nfor r in np.linspace(0.1, 2.0, 40):\n    err = float(np.sum((Logistic(10.0, r, 5.0)(t) - observed) ** 2))\n"
            "    if best is None or err < best[1]:\n        best = (r, err)\nfitted = Logistic(10.0, best[0], 5.0)",
        ),
        ("md", "## Residuals"),
        ("code", "residuals = observed - fitted(t)\nprint(round(float(residuals.std()), 3))"),
        ("md", "## Doubling time"),
        ("code", "doubling = math.log(2) / truth.r\nprint(round(doubling, 3))"),
    ]
)

CELLS = notebook(
    [
        ("code", "values = [3, 1, 4, 1, 5, 9, 2, 6]"),
        ("code", "total = sum(values)\ncount = len(values)"),
        ("code", "squares = [v * v for v in values]"),
        ("code", "mean = total / count\nprint(mean)"),
        ("code", "print(max(squares), mean)"),
    ]
)

CORPUS = {
    "sales_markers.ipynb": SALES,
    "digits_kale.ipynb": KALE,
    "growth_headings.ipynb": HEADINGS,
    "plain_cells.ipynb": CELLS,
}


def main() -> int:
    for name, nb in CORPUS.items():
        nbformat.validate(nb)
        (HERE / name).write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
