"""The wire contract between the generator and the step runtime: the ``J2K_*`` environment,
topic names, messages, step states, error records, step.json and the valid names. The
generator imports these; nothing here imports the rest of the runtime."""
