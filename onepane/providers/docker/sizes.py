"""A docker location's sizes: a CPU quota (of a 100 ms period, changeable on a running
container) and a memory limit with no swap, by name."""

CPU_PERIOD = 100_000  # µs
SIZES = {"docker.nano": (0.25, 64), "docker.small": (0.5, 128), "docker.medium": (1.0, 512),
         "docker.large": (2.0, 2048)}  # name -> (CPUs, MiB)
