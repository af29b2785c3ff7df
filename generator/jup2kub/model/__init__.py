"""The in-memory pipeline every later stage works from: ``notebook`` (reading and validating),
``ipython`` (IPython syntax as plain Python), ``split`` (cells into steps), ``analysis`` (the
data flow of each cell), ``pipeline`` (the step graph and the pipeline's name), ``names`` (the
naming rules) and ``parameters`` (run parameters as papermill takes them)."""
