"""
The branch sales system: branch servers that report one branch's sales
from its CSV, and an aggregator that collects many branches into main.csv.
"""
