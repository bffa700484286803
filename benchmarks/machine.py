"""
What machine a benchmark ran on, printed beside its figures: the figures
mean little without the CPU count, model and how busy the machine was.
"""

import os


def cpus() -> str:
    """``"2 CPUs (AMD EPYC)"``: the CPUs this process may run on, and their model."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{len(os.sched_getaffinity(0))} CPUs ({model})"


def load_average() -> str:
    return "%.2f %.2f %.2f" % os.getloadavg()
