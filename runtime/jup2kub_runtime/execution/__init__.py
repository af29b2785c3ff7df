"""Running a step's code, without Kafka: the cells as a Jupyter kernel runs them, map cells in
parallel chunks, the analysis' guards, one step's run over the state store, and the local
runner's warm processes (pre-imports, the fork server)."""
