"""A step process on Kafka (``python -m jup2kub_runtime``): consume, execute, produce, commit;
map chunks over the step's replicas; the health server and the /runs history."""
