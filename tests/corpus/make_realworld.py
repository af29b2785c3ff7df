"""Writes the hand-written real-world corpus (run: python tests/corpus/make_realworld.py).

The notebooks in realworld/ and the small data files in data/ are committed; this script is
their source of truth, so that the cells stay readable in review. Each notebook is a
scientist-style analysis written in the styles that break pipelines (tests/corpus/SOURCES.md
lists which classes each one covers); all are seeded, run offline in seconds and are stored
without outputs.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
OUT = HERE / "realworld"
DATA = HERE / "data"

Cell = tuple[str, str] | tuple[str, str, Sequence[str]]
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebook(cells: Sequence[Cell], *, ids: bool = True, minor: int = 5) -> dict[str, Any]:
    """A notebook as JSON; ``ids=False`` with ``minor=5`` is the 4.5-without-ids quirk, and
    then sources are stored as lists of lines, as old Jupyter versions wrote them."""
    out = []
    for i, cell in enumerate(cells):
        kind, source = cell[0], cell[1]
        tags = list(cell[2]) if len(cell) > 2 else []  # type: ignore[misc]
        entry: dict[str, Any] = {
            "cell_type": "markdown" if kind == "md" else "code",
            "metadata": {"tags": tags} if tags else {},
            "source": source if ids else source.splitlines(keepends=True),
        }
        if kind != "md":
            entry.update(execution_count=None, outputs=[])
        if ids:
            entry["id"] = f"cell-{i}"
        out.append(entry)
    return {
        "cells": out,
        "metadata": {"kernelspec": KERNEL, "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": minor,
    }


RETAIL = notebook(
    [
        ("md", "# Retail baskets\nOrders per customer: clean, split, segment."),
        ("code", "n_orders = 300\nseed = 11", ["parameters"]),
        (
            "code",
            "#| step: load\nimport numpy as np\nimport pandas as pd\n\n"
            "rng = np.random.default_rng(seed)\n"
            "orders = pd.DataFrame({\n"
            "    'region': rng.choice(['north', 'south', 'east'], size=n_orders),\n"
            "    'day': rng.choice(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], n_orders),\n"
            "    'units': rng.integers(1, 12, size=n_orders),\n"
            "    'price': rng.gamma(4.0, 6.0, size=n_orders).round(2),\n"
            "})\norders.head()",
        ),
        ("md", "No need to copy, we only add columns (famous last words)."),
        (
            "code",
            "#| step: prepare\nclean = orders\n"
            "clean['basket'] = (clean['units'] * clean['price']).round(2)\nprint(len(clean))",
        ),
        (
            "code",
            "#| step: enrich\nclean['is_big'] = clean['basket'] > 100\n"
            "clean.loc[clean['region'] == 'north', 'price'] *= 1.1",
        ),
        (
            "code",
            "#| step: check_raw\nprint(orders.columns.tolist())\n"
            "print(round(orders['price'].sum(), 2))",
        ),
        ("md", "## Train / test"),
        (
            "code",
            "#| step: split\ntrain = clean.sample(frac=0.7, random_state=seed)\n"
            "test = clean.drop(train.index)",
        ),
        (
            "code",
            "#| step: features\nfor d in [train, test]:\n"
            "    d['log_basket'] = np.log1p(d['basket'])\n"
            "    d['weekend'] = d['day'].isin(['sat', 'sun'])\n"
            "print(train.shape, test.shape)",
        ),
        (
            "code",
            "def add_share(frame, col):\n"
            '    """Adds each row\'s share of the column total, in place."""\n'
            "    frame[col + '_share'] = frame[col] / frame[col].sum()",
        ),
        (
            "code",
            "#| step: shares\nadd_share(train, 'basket')\nadd_share(test, 'basket')\n"
            "train[['basket', 'basket_share']].describe()",
        ),
        ("md", "## Segments"),
        (
            "code",
            "#| step: segments\nsegments = {region: part.copy() for region, part in "
            "train.groupby('region')}\n{k: len(v) for k, v in segments.items()}",
        ),
        (
            "code",
            "#| step: priority\nnorth = segments['north']\n"
            "north['priority'] = north['basket'].rank(ascending=False)",
        ),
        (
            "code",
            "#| step: segment_report\nprint({k: v.shape for k, v in segments.items()})\n"
            "segments['north'].sort_values('priority').head(3)",
        ),
        (
            "code",
            "#| step: summary\nsummary = pd.concat({'train': train.describe().T, "
            "'test': test.describe().T}, axis=1)\nsummary",
        ),
    ]
)

SENSORS = notebook(
    [
        ("md", "# Sensor drift report\nThree temperature sensors, one hour of readings."),
        (
            "code",
            "%matplotlib inline\nimport os\nimport numpy as np\nimport pandas as pd\n"
            "import matplotlib.pyplot as plt",
        ),
        ("md", "## Load readings"),
        (
            "code",
            "readings = pd.read_csv('data/sensors.csv', parse_dates=['time'])\n"
            "readings.groupby('sensor')['value'].describe()",
        ),
        ("md", "## Canvas\nOne figure for the whole report; we draw on it section by section."),
        ("code", "fig, ax = plt.subplots(figsize=(6, 3))\nax.set_title('Sensor readings')"),
        ("md", "## Smooth"),
        (
            "code",
            "smooth = readings.pivot(index='time', columns='sensor', values='value')\n"
            "smooth = smooth.rolling(5, min_periods=1).mean()\n"
            "for name in smooth.columns:\n"
            "    ax.plot(smooth.index, smooth[name], label=name)\nax.legend()",
        ),
        ("md", "## Drift"),
        (
            "code",
            "drift = (smooth.iloc[-1] - smooth.iloc[0]).rename('drift').round(3)\n"
            "ax.axhline(smooth.iloc[0].mean(), color='grey', linestyle='--')\ndrift",
        ),
        ("md", "## Save"),
        (
            "code",
            "fig.savefig('sensor_drift.png', dpi=60)\nos.path.getsize('sensor_drift.png') > 0",
        ),
        ("md", "## Histogram"),
        (
            "code",
            "import matplotlib\n\nmatplotlib.pyplot.figure(figsize=(4, 3))\n"
            "matplotlib.pyplot.hist(readings['value'], bins=20)\n"
            "matplotlib.pyplot.savefig('histogram.png', dpi=50)",
        ),
        ("md", "## Table"),
        ("code", "readings.pivot(index='time', columns='sensor', values='value').tail(8)"),
    ]
)

CHURN = notebook(
    [
        ("md", "# Churn model\nKale-style pipeline; exploration cells are tagged `skip`."),
        (
            "code",
            "import random\nimport numpy as np\nimport pandas as pd\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "from sklearn.model_selection import train_test_split",
            ["imports"],
        ),
        ("code", "n = 400\nthreshold = 0.5", ["pipeline-parameters"]),
        ("code", "np.random.seed(1)\nrandom.seed(1)", ["block:setup"]),
        (
            "code",
            "tenure = np.random.randint(1, 60, size=n)\ncharges = np.random.rand(n) * 100\n"
            "plans = [random.choice(['basic', 'plus', 'pro']) for _ in range(n)]\n"
            "risk = 0.03 * charges - 0.05 * tenure + np.random.normal(0, 1, n)\n"
            "customers = pd.DataFrame({'tenure': tenure, 'charges': charges.round(2), "
            "'plan': plans, 'churn': (risk > threshold).astype(int)})",
            ["block:generate", "prev:setup"],
        ),
        ("code", "customers.describe().round(3)"),
        ("code", "customers.head(10)", ["skip"]),
        ("code", "print(customers['plan'].value_counts())"),
        (
            "code",
            "X = customers[['tenure', 'charges']]\ny = customers['churn']\n"
            "X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25)\n"
            "print(len(X_train), len(X_test))",
            ["block:split", "prev:generate"],
        ),
        (
            "code",
            "model = LogisticRegression(max_iter=200)\nmodel.fit(X_train, y_train)\n"
            "acc = model.score(X_test, y_test)\nprint(f'accuracy={acc:.3f}')",
            ["block:train", "prev:split"],
        ),
        (
            "code",
            "boot = [customers.sample(frac=1.0, replace=True)['churn'].mean() for _ in range(50)]\n"
            "print(np.round(np.percentile(boot, [2.5, 97.5]), 3))",
            ["block:bootstrap", "prev:train"],
        ),
        ("code", "import matplotlib.pyplot as plt\n\nplt.hist(boot, bins=10)", ["skip"]),
        ("code", "import matplotlib.pyplot as plt\n\nplt.title('bootstrap churn rate')"),
        ("code", "pick = random.choice(list(customers.index))\ncustomers.loc[pick]"),
        ("code", "print(round(acc, 4))", ["pipeline-metrics"]),
    ]
)

SURVEY = notebook(
    [
        ("md", "# Panel survey\nDraw a panel, score it, shuffle the interview order."),
        ("code", "import collections\nimport random\nimport statistics"),
        ("code", "random.seed(1)"),
        (
            "code",
            "respondents = [f'r{i:03d}' for i in range(200)]\n"
            "answers = {r: random.choice(['yes', 'no', 'maybe']) for r in respondents}",
        ),
        ("code", "collections.Counter(answers.values())"),
        ("code", "panel = random.sample(respondents, 20)\npanel[:5]"),
        (
            "code",
            "scores = {r: random.gauss(50, 10) for r in panel}\nround(statistics.mean(scores.values()), 3)",
        ),
        ("md", "Interview in random order."),
        ("code", "random.shuffle(panel)\npanel[:5]"),
        ("code", "order = list(range(10))\nrandom.shuffle(order)\norder"),
        ("md", "Noise for the sensitivity check."),
        ("code", "import numpy as np\n\nnp.random.seed(1)"),
        ("code", "noise = np.random.rand(5)\nnoise"),
        ("code", "weights = np.random.normal(size=(3, 4))\nweights.round(3)"),
        (
            "code",
            "summary = {'n': len(answers), 'panel': panel[:3], "
            "'noise_sum': round(float(noise.sum()), 6)}\nsummary",
        ),
    ]
)

LOGS = notebook(
    [
        ("md", "# Error logs\nCount levels per log file, collect the errors."),
        (
            "code",
            "#| step: config\nimport os\nimport re\n\n"
            "with open('data/log_config.txt') as file:\n"
            "    levels = [line.strip() for line in file if line.strip()]\nprint(levels)",
        ),
        (
            "code",
            "#| step: scan\ncounts = {}\nfor file in sorted(os.listdir('data/logs')):\n"
            "    path = os.path.join('data/logs', file)\n"
            "    with open(path) as handle:\n        text = handle.read()\n"
            "    counts[file] = {lvl: text.count(lvl) for lvl in levels}\ncounts",
        ),
        ("code", "#| step: last_file\nprint('last file scanned:', file)"),
        (
            "code",
            "#| step: errors\nerror_lines = []\nfor file in sorted(os.listdir('data/logs')):\n"
            "    for line in open(os.path.join('data/logs', file)):\n"
            "        if 'ERROR' in line:\n            stamp = line.split()[0]\n"
            "            error_lines.append((file, stamp, line.strip().split(' ', 2)[-1]))\n"
            "len(error_lines)",
        ),
        (
            "code",
            "#| step: hourly\nhourly = {}\nfor file, stamp, msg in error_lines:\n"
            "    hour = stamp[:13]\n    hourly[hour] = hourly.get(hour, 0) + 1\nhourly",
        ),
        (
            "code",
            "#| step: tally\ntotal = 0\nfor name, per_level in counts.items():\n"
            "    subtotal = sum(per_level.values())\n    total += subtotal\n"
            "    print(name, subtotal)\nprint('total', total)",
        ),
        (
            "code",
            "#| step: users\npattern = re.compile(r'user=(\\w+)')\nusers = set()\n"
            "for file in os.listdir('data/logs'):\n"
            "    for m in pattern.finditer(open(os.path.join('data/logs', file)).read()):\n"
            "        users.add(m.group(1))\nsorted(users)",
        ),
        (
            "code",
            "#| step: write\nwith open('error_report.txt', 'w') as file:\n"
            "    for name, stamp, msg in error_lines:\n"
            "        file.write(f'{name}\\t{stamp}\\t{msg}\\n')\n"
            "print(open('error_report.txt').read().count('\\n'))",
        ),
    ]
)

EXPORTS = notebook(
    [
        ("md", "# Regional targets\nTargets typed in by hand, monthly sales exported per region."),
        (
            "code",
            "!echo region,target > targets.csv\n!echo north,120 >> targets.csv\n"
            "!echo south,95 >> targets.csv",
        ),
        ("code", "import pandas as pd\n\ntargets = pd.read_csv('targets.csv')\ntargets"),
        (
            "code",
            "import numpy as np\n\nrng = np.random.default_rng(3)\n"
            "monthly = pd.DataFrame({'region': np.repeat(['north', 'south'], 6), "
            "'month': list(range(1, 7)) * 2, 'sales': rng.integers(10, 30, 12)})",
        ),
        (
            "code",
            "for i, (region, part) in enumerate(monthly.groupby('region')):\n"
            "    with open(f'out_{i}.csv', 'w') as fh:\n        part.to_csv(fh, index=False)",
        ),
        (
            "code",
            "parts = [pd.read_csv(f'out_{i}.csv') for i in range(2)]\n"
            "combined = pd.concat(parts).merge(targets, on='region')\n"
            "combined.groupby('region')['sales'].sum()",
        ),
        ("md", "Everything below goes to the reports folder."),
        ("code", "import os\n\nos.makedirs('reports', exist_ok=True)\nos.chdir('reports')"),
        (
            "code",
            "combined.to_csv('combined.csv', index=False)\nprint(os.path.exists('combined.csv'))",
        ),
        (
            "code",
            "with open('notes.txt', 'w') as fh:\n    fh.write('generated from monthly sales\\n')",
        ),
        ("code", "os.chdir('..')\nsorted(os.listdir('reports'))"),
        ("code", "!ls reports | wc -l"),
        ("code", "written = !ls out_*.csv\nlist(written)"),
    ]
)

LEGACY = notebook(
    [
        ("md", "# Inventory turnover\nAn old notebook: format 4.5 but no cell ids."),
        (
            "code",
            "#| step: load\nimport pandas as pd\n\nstock = pd.read_csv('data/inventory.csv')\nstock.head()",
        ),
        (
            "code",
            "#| step: turnover\nstock['turnover'] = (stock['sold'] / stock['on_hand'].clip(lower=1)).round(3)\n"
            "stock.sort_values('turnover', ascending=False).head(3)",
        ),
        (
            "code",
            "#| step: flag\nslow = stock[stock['turnover'] < 0.5]['sku'].tolist()\nprint(len(slow), 'slow movers')",
        ),
        (
            "code",
            "#| step: report\nreport = stock.groupby('category').agg(items=('sku', 'count'), "
            "turnover=('turnover', 'mean')).round(3)\nreport",
        ),
        ("code", "report.to_csv('turnover.csv')"),
        ("md", "Slow movers by category:"),
        ("code", "#| step: slow\nstock[stock['sku'].isin(slow)].groupby('category').size()"),
    ],
    ids=False,
)

DISPLAY = notebook(
    [
        ("md", "# Country indicators\nTwenty-four indicators for forty countries."),
        (
            "code",
            "import numpy as np\nimport pandas as pd\n\n"
            "pd.set_option('display.max_columns', 30)\npd.set_option('display.width', 250)",
        ),
        ("md", "## Build"),
        (
            "code",
            "rng = np.random.default_rng(5)\ncountries = [f'C{i:02d}' for i in range(40)]\n"
            "indicators = pd.DataFrame(rng.normal(size=(40, 24)).round(2), index=countries,\n"
            "                          columns=[f'ind_{j:02d}_long_name' for j in range(24)])\n"
            "indicators",
        ),
        ("md", "## Ranks"),
        ("code", "ranks = indicators.rank(axis=0).astype(int)\nranks.iloc[:5]"),
        ("code", "long = indicators.stack()\nlong"),
        ("md", "## Arrays"),
        (
            "code",
            "matrix = indicators.to_numpy()\nnp.set_printoptions(precision=2, suppress=True)\nmatrix[:3]",
        ),
        ("code", "corr = np.corrcoef(matrix.T)\ncorr[:4, :6]"),
        ("md", "## Display"),
        (
            "code",
            "from IPython.display import Markdown, display\n\n"
            "display(Markdown(f'**{len(countries)} countries**'))\n"
            "display(indicators.describe().T.head())\nprint('done')",
        ),
        ("code", "top = indicators.mean(axis=1).sort_values().tail(10)\ntop.plot.barh()"),
        ("code", "pd.Series(range(100), name='counter')"),
    ]
)

KALE_SKIP = notebook(
    [
        ("md", "# Clustering pipeline\nKale tags: imports, functions, blocks with prev, skip."),
        (
            "code",
            "import numpy as np\nimport pandas as pd\nfrom sklearn.preprocessing import StandardScaler",
            ["imports"],
        ),
        (
            "code",
            "def normalise(frame, columns):\n"
            '    """Standardises the columns in place."""\n'
            "    frame[columns] = (frame[columns] - frame[columns].mean()) / frame[columns].std()\n\n\n"
            "def clip_outliers(frame, column, k=3.0):\n"
            '    """Clips a column to mean +- k std, in place."""\n'
            "    mean, std = frame[column].mean(), frame[column].std()\n"
            "    frame[column] = frame[column].clip(mean - k * std, mean + k * std)",
            ["functions"],
        ),
        ("code", "n_samples = 250\nseed = 4", ["pipeline-parameters"]),
        (
            "code",
            "rng = np.random.default_rng(seed)\n"
            "data = pd.DataFrame({'a': rng.normal(10, 2, n_samples), "
            "'b': rng.exponential(3, n_samples), 'c': rng.integers(0, 5, n_samples)})",
            ["block:load"],
        ),
        ("code", "data.head(20)", ["skip"]),
        ("code", "data.plot.scatter(x='a', y='b')"),
        (
            "code",
            "clip_outliers(data, 'b')\nnormalise(data, ['a', 'b'])\ndata.describe().round(3)",
            ["block:clean", "prev:load"],
        ),
        ("code", "backup = data\nbackup['c_sq'] = backup['c'] ** 2"),
        (
            "code",
            "features = data[['a', 'b', 'c_sq']].to_numpy()\n"
            "scaler = StandardScaler().fit(features)\nscaled = scaler.transform(features)\n"
            "scaled[:3].round(3)",
            ["block:features", "prev:clean"],
        ),
        ("code", "print(scaled.std(axis=0))", ["skip"]),
        (
            "code",
            "from sklearn.cluster import KMeans\n\n"
            "km = KMeans(n_clusters=3, n_init=5, random_state=seed).fit(scaled)\nnp.bincount(km.labels_)",
            ["block:clusters", "prev:features"],
        ),
        ("code", "data['cluster'] = km.labels_\ndata.groupby('cluster').mean().round(3)"),
        (
            "code",
            "print(data.shape)\nprint(sorted(data.columns))",
            ["block:report", "prev:clusters"],
        ),
    ]
)

VISITS = notebook(
    [
        ("md", "# Website visits\nDaily visits, weekly pattern, a two-panel figure."),
        (
            "code",
            "#| step: setup\nimport matplotlib.pyplot as plt\nimport numpy as np\nimport pandas as pd\n"
            "import seaborn as sns\n\nnp.random.seed(1)\nsns.set_theme(style='whitegrid')",
        ),
        (
            "code",
            "#| step: simulate\ndays = pd.date_range('2024-01-01', periods=120, freq='D')\n"
            "visits = pd.DataFrame({'day': days, 'visits': (200 + 30 * np.sin(np.arange(120) / 7)\n"
            "                       + np.random.randn(120) * 10).round(1)})\n"
            "visits['weekday'] = visits['day'].dt.day_name()",
        ),
        (
            "code",
            "#| step: weekly\nweekly = visits.set_index('day')['visits'].resample('W').mean().round(2)\n"
            "weekly.head(10)",
        ),
        ("code", "#| step: canvas\nfig, axes = plt.subplots(1, 2, figsize=(8, 3))"),
        (
            "code",
            "#| step: lineplot\nsns.lineplot(data=visits, x='day', y='visits', ax=axes[0])\n"
            "axes[0].set_title('daily')",
        ),
        (
            "code",
            "#| step: boxplot\norder = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', "
            "'Saturday', 'Sunday']\n"
            "sns.boxplot(data=visits, x='weekday', y='visits', order=order, ax=axes[1])\n"
            "axes[1].tick_params(axis='x', rotation=45)",
        ),
        ("code", "#| step: save\nfig.tight_layout()\nfig.savefig('visits.png', dpi=50)"),
        (
            "code",
            "#| step: anomalies\nspikes = np.random.choice(len(visits), 5, replace=False)\n"
            "visits.loc[spikes, 'visits'] *= 1.5\nvisits.nlargest(5, 'visits')",
        ),
        (
            "code",
            "#| step: heat\npivot = visits.assign(week=visits['day'].dt.isocalendar().week)"
            ".pivot_table(index='week', columns='weekday', values='visits')\n"
            "ax = sns.heatmap(pivot[order].round(0), cmap='viridis')\n"
            "ax.figure.savefig('heat.png', dpi=40)",
        ),
    ]
)

SQLITE = notebook(
    [
        ("md", "# Orders in SQLite\nAn in-memory database shared by the later cells."),
        ("code", "#| step: connect\nimport sqlite3\n\nconn = sqlite3.connect(':memory:')"),
        (
            "code",
            "#| step: load\nconn.execute('create table orders (id integer, amount real)')\n"
            "conn.executemany('insert into orders values (?, ?)', [(i, i * 1.5) for i in range(20)])",
        ),
        (
            "code",
            "#| step: query\ntotal = conn.execute('select sum(amount) from orders').fetchone()[0]\n"
            "print(total)",
        ),
    ]
)

CHUNKS = notebook(
    [
        (
            "md",
            "# Chunked totals\nThe readings file read in chunks, as for a file too big for memory.",
        ),
        (
            "code",
            "#| step: open\nimport pandas as pd\n\nreader = pd.read_csv('data/sensors.csv', chunksize=50)",
        ),
        (
            "code",
            "#| step: totals\ntotals = {}\nfor chunk in reader:\n"
            "    for sensor, value in chunk.groupby('sensor')['value'].sum().items():\n"
            "        totals[sensor] = round(totals.get(sensor, 0.0) + value, 3)\ntotals",
        ),
    ]
)

MODELS = notebook(
    [
        ("md", "# Model comparison\nThree classifiers on one synthetic problem."),
        ("code", "n_samples = 300\ncv_folds = 3", ["parameters"]),
        (
            "code",
            "from sklearn.datasets import make_classification\n\n"
            "X, y = make_classification(n_samples=n_samples, n_features=8, random_state=0)\nX.shape",
            ["step:data"],
        ),
        (
            "code",
            "from sklearn.ensemble import RandomForestClassifier\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "from sklearn.tree import DecisionTreeClassifier\n\n"
            "models = {'logreg': LogisticRegression(max_iter=500),\n"
            "          'tree': DecisionTreeClassifier(random_state=0),\n"
            "          'forest': RandomForestClassifier(n_estimators=20, random_state=0)}",
            ["step:models"],
        ),
        ("code", "forest = models['forest']\nforest.set_params(max_depth=4)", ["step:tune"]),
        ("code", "%%time\nfor name, model in models.items():\n    model.fit(X, y)", ["step:fit"]),
        (
            "code",
            "from sklearn.model_selection import cross_val_score\n\n"
            "scores = {name: round(float(cross_val_score(m, X, y, cv=cv_folds).mean()), 4)\n"
            "          for name, m in models.items()}\nscores",
            ["step:score"],
        ),
        (
            "code",
            "print(models['forest'].get_params()['max_depth'])\n"
            "print([est.get_depth() for est in models['forest'].estimators_][:5])",
            ["step:depths"],
        ),
        (
            "code",
            "import pandas as pd\n\nimportances = pd.Series(models['forest'].feature_importances_,\n"
            "                        index=[f'f{i}' for i in range(8)]).sort_values()",
            ["step:importance"],
        ),
        ("code", "importances.round(4)"),
    ]
)

LAB = notebook(
    [
        ("md", "# Treatment effect\nA quick lab notebook: t-test, bootstrap, one figure."),
        (
            "code",
            "import numpy as np\nfrom scipy import stats\nimport matplotlib.pyplot as plt\n%matplotlib inline",
        ),
        ("code", "np.random.seed(42)"),
        (
            "code",
            "control = np.random.normal(5.0, 1.0, 30)\ntreated = np.random.normal(5.6, 1.1, 30)",
        ),
        ("code", "t, p = stats.ttest_ind(control, treated)\nprint(f't={t:.3f} p={p:.4f}')"),
        ("md", "Centre the control group (in place, to save memory)."),
        ("code", "groups = [control, treated]\nbaseline = groups[0]\nbaseline -= baseline.mean()"),
        ("code", "print(round(float(control.mean()), 6))"),
        (
            "code",
            "results = []\nall_results = results\nfor n in (10, 20, 30):\n"
            "    res = stats.ttest_ind(control[:n], treated[:n])\n"
            "    all_results.append((n, round(float(res.pvalue), 4)))",
        ),
        ("code", "results"),
        (
            "code",
            "boot = np.array([np.random.choice(treated, 30).mean() for _ in range(200)])\n"
            "np.percentile(boot, [5, 95]).round(3)",
        ),
        (
            "code",
            "fig = plt.figure(figsize=(4, 3))\nax = fig.add_subplot()\ncounts, edges, _ = ax.hist(boot, bins=20)",
        ),
        ("code", "ax.axvline(boot.mean(), color='red')\nax.set_xlabel('bootstrap mean')"),
        ("code", "fig.savefig('bootstrap.png', dpi=50)"),
        (
            "code",
            "summary = {'t': round(float(t), 4), 'p': round(float(p), 5), 'n': len(control)}\nsummary",
        ),
    ]
)

LISPY = notebook(
    [
        (
            "md",
            "# (How to Write a (Lisp) Interpreter (in Python))\n"
            "A Scheme subset after Peter Norvig's lis.py, with `match`: parse, an environment, "
            "`eval`, and a few programs run through `batch`.",
        ),
        ("code", "import math\nimport operator as op\nfrom collections import ChainMap"),
        ("md", "## Parsing: from text to lists"),
        (
            "code",
            "Symbol = str\n\n\n"
            "def tokenize(chars):\n"
            '    "Convert a string of characters into a list of tokens."\n'
            "    return chars.replace('(', ' ( ').replace(')', ' ) ').split()\n\n\n"
            "def parse(program):\n"
            '    "Read a Scheme expression from a string."\n'
            "    return read_from_tokens(tokenize(program))\n\n\n"
            "def read_from_tokens(tokens):\n"
            '    "Read an expression from a sequence of tokens."\n'
            "    if not tokens:\n"
            "        raise SyntaxError('unexpected EOF')\n"
            "    token = tokens.pop(0)\n"
            "    if token == '(':\n"
            "        exp = []\n"
            "        while tokens[0] != ')':\n"
            "            exp.append(read_from_tokens(tokens))\n"
            "        tokens.pop(0)  # pop off ')'\n"
            "        return exp\n"
            "    elif token == ')':\n"
            "        raise SyntaxError('unexpected )')\n"
            "    return atom(token)\n\n\n"
            "def atom(token):\n"
            '    "Numbers become numbers; every other token is a symbol."\n'
            "    try:\n"
            "        return int(token)\n"
            "    except ValueError:\n"
            "        try:\n"
            "            return float(token)\n"
            "        except ValueError:\n"
            "            return Symbol(token)",
        ),
        ("code", "parse('(begin (define r 10) (* pi (* r r)))')"),
        ("md", "## Environments\nThe global environment: math functions and operators."),
        (
            "code",
            "def standard_env():\n"
            '    "An environment with some Scheme standard procedures."\n'
            "    env = {k: v for k, v in vars(math).items() if not k.startswith('_')}\n"
            "    env.update({\n"
            "        '+': op.add, '-': op.sub, '*': op.mul, '/': op.truediv,\n"
            "        '>': op.gt, '<': op.lt, '>=': op.ge, '<=': op.le, '=': op.eq,\n"
            "        'abs': abs, 'max': max, 'min': min, 'not': op.not_,\n"
            "    })\n"
            "    return env\n\n\n"
            "ENV = standard_env()\nlen(ENV)",
        ),
        ("md", "## Procedures and `eval`"),
        (
            "code",
            "class Procedure:\n"
            '    "A user-defined Scheme procedure."\n'
            "    def __init__(self, parms, body, env):\n"
            "        self.parms, self.body, self.env = parms, body, env\n\n"
            "    def __call__(self, *args):\n"
            "        return eval(self.body, ChainMap(dict(zip(self.parms, args)), self.env))\n\n\n"
            "def change(env, name, value):\n"
            '    "set!: find the innermost map that defines name and change it there."\n'
            "    maps = env.maps if isinstance(env, ChainMap) else [env]\n"
            "    for m in maps:\n"
            "        if name in m:\n"
            "            m[name] = value\n"
            "            return\n"
            "    raise NameError(name)\n\n\n"
            "def eval(exp, env):\n"
            '    "Evaluate an expression in an environment."\n'
            "    match exp:\n"
            "        case str(name):\n"
            "            return env[name]\n"
            "        case int(x) | float(x):\n"
            "            return x\n"
            "        case ['quote', x]:\n"
            "            return x\n"
            "        case ['if', test, then, alt]:\n"
            "            return eval(then if eval(test, env) else alt, env)\n"
            "        case ['define', [str(name), *parms], body]:\n"
            "            env[name] = Procedure(parms, body, env)\n"
            "        case ['define', str(name), value]:\n"
            "            env[name] = eval(value, env)\n"
            "        case ['set!', str(name), value]:\n"
            "            change(env, name, eval(value, env))\n"
            "        case ['lambda', parms, body]:\n"
            "            return Procedure(parms, body, env)\n"
            "        case ['begin', *exps]:\n"
            "            for e in exps:\n"
            "                result = eval(e, env)\n"
            "            return result\n"
            "        case [op_, *args]:\n"
            "            proc = eval(op_, env)\n"
            "            return proc(*[eval(a, env) for a in args])",
        ),
        (
            "code",
            "def batch(program):\n"
            '    "Run a program in the global environment."\n'
            "    return eval(parse(program), ENV)\n\n\n"
            "def lispstr(exp):\n"
            '    "Convert a Python object back into a Lisp-readable string."\n'
            "    if isinstance(exp, list):\n"
            "        return '(' + ' '.join(map(lispstr, exp)) + ')'\n"
            "    return str(exp)",
        ),
        ("md", "## Definitions\nEach `define` adds to the global environment."),
        (
            "code",
            "batch('(define r 10)')\n"
            "batch('(define (circle-area r) (* pi (* r r)))')\n"
            "batch('(define (square x) (* x x))')\n"
            "round(batch('(circle-area r)'), 6)",
        ),
        ("md", "## Recursion and state"),
        (
            "code",
            "batch('(define (fact n) (if (<= n 1) 1 (* n (fact (- n 1)))))')\n"
            "batch('(define counter 0)')\n"
            "batch('(define (tick) (set! counter (+ counter 1)))')\n"
            "for _ in range(3):\n"
            "    batch('(tick)')\n"
            "print(batch('(fact 10)'), batch('(square 12)'), batch('counter'))",
        ),
        ("md", "## What the session defined"),
        (
            "code",
            "user = sorted(set(ENV) - set(standard_env()))\nprint(user)\n"
            "print(ENV['r'], ENV['counter'], lispstr(parse('(a (b c) 3)')))\n"
            "batch('(begin (define r 2) (circle-area r))')",
        ),
        ("code", "print(round(batch('(circle-area r)'), 4), ENV['r'])"),
    ]
)

BASIC = notebook(
    [
        ("md", "# A tiny BASIC\nA grammar, a parser and a machine for a few lines of BASIC."),
        (
            "code",
            "#| step: setup\nimport re\n\n"
            "grammar = {}  # keyword -> compiled pattern of the statement's arguments\n"
            'PROGRAM = """\n'
            "10 LET N = 10\n"
            "20 LET A = 0\n"
            "30 LET B = 1\n"
            "40 PRINT A\n"
            "50 LET T = A + B\n"
            "60 LET A = B\n"
            "70 LET B = T\n"
            "80 LET N = N - 1\n"
            "90 IF N > 0 THEN 40\n"
            "100 END\n"
            '"""',
        ),
        (
            "code",
            "#| step: rules\n"
            "def add_rule(table, keyword, pattern):\n"
            '    "One statement: its keyword and the pattern of what follows."\n'
            "    table[keyword] = re.compile(pattern + '$')\n\n\n"
            "def rule(keyword, pattern):\n"
            "    grammar[keyword] = re.compile(pattern + '$')\n\n\n"
            "def assignment_rules(table):\n"
            "    add_rule(table, 'LET', r'(?P<var>[A-Z]) = (?P<exp>.+)')\n\n\n"
            "def control_rules(table):\n"
            "    add_rule(table, 'GOTO', r'(?P<target>\\d+)')\n"
            "    add_rule(table, 'IF', r'(?P<exp>.+) THEN (?P<target>\\d+)')\n\n\n"
            "def output_rules(table):\n"
            "    add_rule(table, 'PRINT', r'(?P<exp>.+)')\n"
            "    add_rule(table, 'END', r'')\n\n\n"
            "def load_grammar():\n"
            "    assignment_rules(grammar)\n"
            "    control_rules(grammar)\n"
            "    output_rules(grammar)",
        ),
        ("code", "#| step: grammar\nload_grammar()\nsorted(grammar)"),
        (
            "code",
            "#| step: parse\n"
            "def parse_line(line):\n"
            "    number, keyword, *rest = line.split(maxsplit=2)\n"
            "    match = grammar[keyword].match(rest[0] if rest else '')\n"
            "    if match is None:\n"
            "        raise SyntaxError(line)\n"
            "    return int(number), (keyword, match.groupdict())\n\n\n"
            "program = dict(parse_line(line) for line in PROGRAM.strip().splitlines())\n"
            "len(program), program[90]",
        ),
        (
            "code",
            "#| step: machine\n"
            "def bump(counts, key):\n"
            "    counts[key] = counts.get(key, 0) + 1\n\n\n"
            "class Machine:\n"
            '    "Runs a parsed program; its state: variables, line pointer, output, counts."\n'
            "    def __init__(self, program):\n"
            "        self.lines = sorted(program)\n"
            "        self.program = program\n"
            "        self.state = {'vars': {}, 'pc': 0, 'out': [], 'counts': {}}\n\n"
            "    def value(self, exp):\n"
            "        return eval(exp, {'__builtins__': {}}, dict(self.state['vars']))\n\n"
            "    def jump(self, target):\n"
            "        self.state['pc'] = self.lines.index(int(target))\n\n"
            "    def execute(self, keyword, args):\n"
            "        bump(self.state['counts'], keyword)\n"
            "        self.state['pc'] += 1\n"
            "        if keyword == 'LET':\n"
            "            self.state['vars'][args['var']] = self.value(args['exp'])\n"
            "        elif keyword == 'PRINT':\n"
            "            self.state['out'].append(str(self.value(args['exp'])))\n"
            "        elif keyword == 'GOTO':\n"
            "            self.jump(args['target'])\n"
            "        elif keyword == 'IF' and self.value(args['exp']):\n"
            "            self.jump(args['target'])\n"
            "        elif keyword == 'END':\n"
            "            self.state['pc'] = len(self.lines)\n\n"
            "    def extend(self, table):\n"
            '        "Add the statements only this machine knows to a grammar."\n'
            "        for keyword in ('REM', 'STOP'):\n"
            "            add_rule(table, keyword, r'.*')\n\n"
            "    def run(self, limit=500):\n"
            "        while self.state['pc'] < len(self.lines) and limit:\n"
            "            self.execute(*self.program[self.lines[self.state['pc']]])\n"
            "            limit -= 1\n\n\n"
            "machine = Machine(program)",
        ),
        ("code", "#| step: run\nmachine.run()\nprint(' '.join(machine.state['out']))"),
        (
            "code",
            "#| step: more_rules\nmachine.extend(grammar)\nrule('DIM', r'.*')\n"
            "machine.execute('LET', {'var': 'Z', 'exp': 'A * 2'})\nsorted(grammar)",
        ),
        (
            "code",
            "#| step: report\nprint(machine.state['vars'])\nprint(machine.state['counts'])\n"
            "print(sorted(grammar), machine.state['pc'])",
        ),
    ]
)

CHAPTER = notebook(
    [
        ("md", "# Chapter 4: when things go wrong\nArrays on disk, and the errors Python raises."),
        (
            "code",
            "import numpy as np\n\nvalues = np.arange(12, dtype='float64').reshape(3, 4)\n"
            "print(values.sum())",
        ),
        ("md", "Dividing by zero is an error in plain Python (NumPy only warns):"),
        ("code", "ratios = [v / 0 for v in (1.0, 2.0)]\nratios"),
        ("md", "Keeping an array on disk, memory-mapped:"),
        (
            "code",
            "table = np.memmap('values.dat', dtype='float64', mode='w+', shape=values.shape)\n"
            "table[:] = values\ntable.flush()\nprint(table.shape)",
        ),
        ("code", "print(float(values.mean()))"),
    ]
)

GUARD = notebook(
    [
        ("md", "# Weekly stock report\nLoad, check, summarise, publish."),
        (
            "code",
            "#| step: load\nimport pandas as pd\n\n"
            "stock = pd.DataFrame({'item': ['bolt', 'nut', 'gear', 'shaft'],\n"
            "                      'qty': [40, 12, -3, 7], 'price': [0.2, 0.1, 4.5, 12.0]})\n"
            "stock",
        ),
        (
            "code",
            "#| step: validate\nassert (stock['qty'] >= 0).all(), 'negative quantities in stock'",
        ),
        (
            "code",
            "#| step: summarise\nvalue = (stock['qty'] * stock['price']).sum()\n"
            "print(f'stock value: {value:.2f}')",
        ),
        (
            "code",
            "#| step: publish\nstock.assign(value=stock['qty'] * stock['price'])"
            ".to_csv('stock_report.csv', index=False)\nprint('published', round(value, 2))",
        ),
    ]
)

STOCKTAKE = notebook(
    [
        ("md", "# Stocktake\nKnown data problems are kept visible: those cells may raise."),
        (
            "code",
            "#| step: load\nimport csv\nimport sys\n\n"
            "with open('data/inventory.csv') as f:\n    rows = list(csv.DictReader(f))\n"
            "threshold = 10\nstatus = 'raw'\nprint(len(rows), 'rows')",
        ),
        (
            "code",
            "#| step: validate\nchecked = 0\nfor row in rows:\n    checked += 1\n"
            "    if int(row['sold']) > int(row['on_hand']):\n"
            "        print('oversold:', row['sku'], file=sys.stderr)\n"
            "        raise ValueError(f\"{row['sku']} sold more than it had on hand\")\n"
            "status = 'validated'\nchecked",
            ["raises-exception"],
        ),
        (
            "code",
            "#| step: reorder\nreorder = [r['sku'] for r in rows if int(r['on_hand']) < threshold]\n"
            "print(len(reorder), 'to reorder')",
            ["raises-exception"],
        ),
        (
            "code",
            "#| step: report\nprint('status:', status, '| rows checked:', checked)\n"
            "{'status': status, 'checked': checked, 'reorder': reorder[:5]}",
        ),
        (
            "code",
            "by_category = {}\nfor r in rows:\n"
            "    by_category.setdefault(r['category'], []).append(int(r['on_hand']))\n"
            "by_category['hardware']",
            ["raises-exception"],
        ),
        ("code", "sorted(by_category), row['sku']"),
    ]
)

#: the notebook's own modules (issue 28): a module written with %%writefile and imported two
#: steps later (a step in between runs in parallel), a module written with open() and imported,
#: a script written and run with %run whose functions later steps use
KINETICS = notebook(
    [
        ("md", "# Reaction kinetics\nModel functions go to a module the fitting steps import."),
        ("code", "#| step: helpers\nprint('writing the model module')"),
        (
            "code",
            "%%writefile kinetics.py\nimport math\n\n\ndef first_order(c0, k, t):\n"
            "    return c0 * math.exp(-k * t)\n\n\ndef half_life(k):\n"
            "    return math.log(2) / k\n",
        ),
        (
            "code",
            "#| step: measure\nimport numpy as np\n\nnp.random.seed(3)\n"
            "times = np.linspace(0, 10, 11)\nnoise = np.random.normal(0, 0.01, size=times.size)",
        ),
        (
            "code",
            "#| step: fit\nimport numpy as np\nimport kinetics\n\n"
            "conc = np.array([kinetics.first_order(1.0, 0.23, t) for t in times]) + noise\n"
            "ks = np.linspace(0.05, 0.5, 46)\n"
            "errors = [((np.array([kinetics.first_order(1.0, k, t) for t in times]) - conc) ** 2)"
            ".sum() for k in ks]\n"
            "best_k = float(ks[int(np.argmin(errors))])\nprint(round(best_k, 3))",
        ),
        (
            "code",
            "#| step: half_life\nfrom kinetics import half_life\n\n"
            "print(f'half-life: {half_life(best_k):.2f} min')",
        ),
        (
            "code",
            "#| step: units\nwith open('units.py', 'w') as fh:\n"
            "    fh.write(\"TIME = 'min'\\nCONC = 'mol/L'\\n\")",
        ),
        (
            "code",
            "#| step: label\nimport units\n\n"
            "print(f'time in {units.TIME}, concentration in {units.CONC}')",
        ),
        ("code", "#| step: style\nprint('table style next')"),
        (
            "code",
            "%%writefile table_style.py\nWIDTH = 9\n\n\ndef row(*cells):\n"
            "    return ''.join(str(c).rjust(WIDTH) for c in cells)\n",
        ),
        (
            "code",
            "#| step: table\n%run table_style.py\nprint(row('t', 'conc'))\n"
            "for t, c in zip(times[:3], conc[:3]):\n    print(row(t, round(c, 4)))",
        ),
        ("code", "#| step: footer\nprint(row('k', round(best_k, 3)), kinetics.half_life(1.0))"),
    ]
)

LEDGER = notebook(
    [
        ("md", "# Ledger replay\nA day's account events, replayed through a table of handlers."),
        ("code", "opening = 100.0", ["parameters"]),
        (
            "code",
            "#| step: events\nimport random\nfrom collections import Counter\n\n"
            "rng = random.Random(7)\n"
            "events = [{'kind': rng.choice(['deposit', 'withdraw']),\n"
            "           'amount': round(rng.uniform(1, 50), 2)} for _ in range(40)]\n"
            "LEDGER = {'cash': opening, 'fees': 0.0, 'count': Counter()}\n"
            "print(len(events), 'events')",
        ),
        (
            "code",
            "#| step: handlers\ndef deposit(ledger, e):\n    ledger['cash'] += e['amount']\n"
            "    ledger['count']['deposit'] += 1\n\n\ndef withdraw(ledger, e):\n"
            "    fee = round(0.01 * e['amount'], 2)\n    ledger['cash'] -= e['amount'] + fee\n"
            "    ledger['fees'] += fee\n    ledger['count']['withdraw'] += 1\n\n\n"
            "HANDLERS = {'deposit': deposit, 'withdraw': withdraw}\nprint(sorted(HANDLERS))",
        ),
        ("code", "#| step: opening_view\nprint('opening cash', LEDGER['cash'])"),
        (
            "code",
            "#| step: replay\nfor e in events:\n    HANDLERS[e['kind']](LEDGER, e)\n"
            "print('replayed', sum(LEDGER['count'].values()))",
        ),
        (
            "code",
            "#| step: balance\nprint(f\"cash {LEDGER['cash']:.2f}, fees {LEDGER['fees']:.2f}\")\n"
            "balance = round(LEDGER['cash'], 2)",
        ),
        (
            "code",
            "#| step: report\nper_kind = {k: LEDGER['count'][k] for k in sorted(LEDGER['count'])}\n"
            "print(per_kind, balance)",
        ),
    ]
)

GALLERY = notebook(
    [
        (
            "md",
            "# Station report\nNine standard figures of one station's year, saved as PNG files "
            "for the report.",
        ),
        ("code", "station = 'north'\ndays = 365", ["parameters"]),
        ("md", "## Data"),
        (
            "code",
            "import numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\n\n"
            "rng = np.random.default_rng(4)\nt = np.arange(days)\n"
            "weather = pd.DataFrame({\n"
            "    'temp': 10 + 8 * np.sin(2 * np.pi * t / 365) + rng.normal(0, 2, days),\n"
            "    'rain': rng.gamma(0.6, 3.0, days),\n"
            "    'wind': rng.weibull(2.0, days) * 5,\n"
            "}, index=pd.date_range('2024-01-01', periods=days))\n"
            "weather.describe().round(2)",
        ),
        ("md", "## Temperature"),
        (
            "code",
            "fig, ax = plt.subplots(figsize=(5, 3))\nax.plot(weather.index, weather['temp'], lw=0.8)\nax.set_ylabel('°C')\nax.set_title(f'{station}: temperature')\nfig.savefig('temperature.png', dpi=50)\nplt.close(fig)",
        ),
        ("md", "## Monthly temperature"),
        (
            "code",
            "fig, ax = plt.subplots(figsize=(5, 3))\nweather['temp'].resample('MS').mean().plot(ax=ax, marker='o')\nax.set_title(f'{station}: monthly temperature')\nfig.savefig('temperature_monthly.png', dpi=50)\nplt.close(fig)",
        ),
        ("md", "## Rain"),
        (
            "code",
            "fig, ax = plt.subplots(figsize=(5, 3))\nax.bar(weather.index, weather['rain'], width=1.0)\nax.set_ylabel('mm')\nax.set_title(f'{station}: rain')\nfig.savefig('rain.png', dpi=50)\nplt.close(fig)",
        ),
        ("md", "## Rain histogram"),
        (
            "code",
            "fig, ax = plt.subplots(figsize=(5, 3))\nax.hist(weather['rain'], bins=30)\nax.set_xlabel('mm per day')\nax.set_title(f'{station}: rain histogram')\nfig.savefig('rain_hist.png', dpi=50)\nplt.close(fig)",
        ),
        ("md", "## Cumulative rain"),
        (
            "code",
            "fig, ax = plt.subplots(figsize=(5, 3))\nweather['rain'].cumsum().plot(ax=ax)\nax.set_title(f'{station}: cumulative rain')\nfig.savefig('rain_cumulative.png', dpi=50)\nplt.close(fig)",
        ),
        ("md", "## Wind"),
        (
            "code",
            "fig, ax = plt.subplots(figsize=(5, 3))\nax.plot(weather.index, weather['wind'].rolling(7).mean())\nax.set_ylabel('m/s, 7-day mean')\nax.set_title(f'{station}: wind')\nfig.savefig('wind.png', dpi=50)\nplt.close(fig)",
        ),
        ("md", "## Wind roses by season"),
        (
            "code",
            "fig, ax = plt.subplots(figsize=(5, 3))\nseasons = weather.groupby(weather.index.quarter)['wind'].mean()\nax.bar(seasons.index, seasons.values)\nax.set_title(f'{station}: wind roses by season')\nfig.savefig('wind_seasons.png', dpi=50)\nplt.close(fig)",
        ),
        ("md", "## Temperature against wind"),
        (
            "code",
            "fig, ax = plt.subplots(figsize=(5, 3))\nax.scatter(weather['wind'], weather['temp'], s=4)\nax.set_title(f'{station}: temperature against wind')\nfig.savefig('temp_wind.png', dpi=50)\nplt.close(fig)",
        ),
        ("md", "## Box plots"),
        (
            "code",
            "fig, ax = plt.subplots(figsize=(5, 3))\nweather[['temp', 'rain', 'wind']].plot.box(ax=ax)\nax.set_title(f'{station}: box plots')\nfig.savefig('boxes.png', dpi=50)\nplt.close(fig)",
        ),
    ]
)

NOTEBOOKS = {
    "retail_aliasing_markers": RETAIL,
    "sensor_figure_headings": SENSORS,
    "churn_random_kale": CHURN,
    "survey_random_cells": SURVEY,
    "logs_loops_markers": LOGS,
    "exports_shell_cells": EXPORTS,
    "legacy_v45_noids_markers": LEGACY,
    "indicators_display_headings": DISPLAY,
    "clusters_kale_skip": KALE_SKIP,
    "visits_seaborn_markers": VISITS,
    "sqlite_connection_refused": SQLITE,
    "chunked_reader_refused": CHUNKS,
    "models_step_tags": MODELS,
    "treatment_lab_cells": LAB,
    "lispy_interpreter_headings": LISPY,
    "tiny_basic_markers": BASIC,
    "stocktake_raises_markers": STOCKTAKE,
    "kinetics_local_modules_markers": KINETICS,
    "chapter_memmap_error_cells": CHAPTER,
    "guard_publish_markers": GUARD,
    "ledger_dispatch_markers": LEDGER,
    "station_figures_headings": GALLERY,
}


def data_files() -> dict[str, str]:
    """The small data files the notebooks read (deterministic)."""
    rnd = random.Random(20)
    sensors = ["time,sensor,value"]
    for minute in range(60):
        for k, sensor in enumerate(("s1", "s2", "s3")):
            value = 20 + k + 0.02 * minute * (k - 1) + rnd.gauss(0, 0.3)
            sensors.append(f"2024-03-01 10:{minute:02d}:00,{sensor},{value:.3f}")
    files = {"sensors.csv": "\n".join(sensors) + "\n", "log_config.txt": "INFO\nWARNING\nERROR\n"}
    users = ["ana", "bo", "chen", "dee"]
    for n in (1, 2, 3):
        lines = []
        for i in range(40):
            level = rnd.choice(["INFO"] * 5 + ["WARNING"] * 2 + ["ERROR"])
            stamp = f"2024-03-0{n}T{9 + i // 10:02d}:{(i * 7) % 60:02d}:00"
            lines.append(f"{stamp} {level} request {i} user={rnd.choice(users)}")
        files[f"logs/app-{n}.log"] = "\n".join(lines) + "\n"
    stock = ["sku,category,on_hand,sold"]
    for i in range(30):
        category = ["tools", "garden", "paint"][i % 3]
        stock.append(f"SKU{i:03d},{category},{rnd.randint(0, 60)},{rnd.randint(0, 40)}")
    files["inventory.csv"] = "\n".join(stock) + "\n"
    return files


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, nb in NOTEBOOKS.items():
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        (OUT / f"{name}.ipynb").write_text(text, encoding="utf-8")
    for rel, text in data_files().items():
        (DATA / rel).parent.mkdir(parents=True, exist_ok=True)
        (DATA / rel).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
