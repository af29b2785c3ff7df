"""The machine the cluster runs on: where its files live, the commands and detached daemons it
runs (pids recorded, only those ever signalled), the mounts and sysctls it leaves behind."""
