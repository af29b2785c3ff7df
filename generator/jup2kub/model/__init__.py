"""The in-memory pipeline every later stage works from. ``load`` is the way in (a notebook or a
composition -> ``Pipeline``); below it ``compose`` (compositions, in memory), ``grouping``
(cells grouped into steps), ``dataflow`` (the values that cross step boundaries, resolved into
the pipeline), ``cacheability`` and ``mapping`` (which steps may be cached, which cells are
maps), ``pipeline`` (the pipeline's types), ``split`` (cells into steps), ``analysis`` (the data
flow of each cell), ``parameters`` (the parameters cell, and run parameters as papermill takes
them), ``kale`` and ``secrets``, and at the bottom ``notebook`` (reading and validating),
``ipython`` (IPython syntax as plain Python) and ``names`` (the naming rules)."""
