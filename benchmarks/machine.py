"""
What machine a benchmark ran on, printed beside its figures: the figures
mean little without the CPU count, model and how busy the machine was.
"""

import os
import resource


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


def process_cpu_seconds(pid: int):
    """
    CPU seconds (user + system) process C{pid} has used so far, or None where
    /proc is missing.  Throughput moves with whatever else the host runs;
    CPU time per request moves much less, so comparisons use both.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # Fields after the parenthesised command name; utime and stime
            # are the 14th and 15th fields of the whole line.
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int):
    """
    CPU seconds (user + system) used so far by process C{pid} and every
    live descendant (a master and its workers), or None where /proc is
    missing.
    """
    parents = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier += children
    if process_cpu_seconds(pid) is None:
        return None
    return sum(filter(None, map(process_cpu_seconds, tree)))


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
