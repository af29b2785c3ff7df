"""What the runtime keeps on disk: the state volume (runs, steps, values), the value file
format and the step cache."""
