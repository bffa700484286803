"""
The online marketplace: DB services, stateless buyer and seller front ends,
payments, their JSON-over-TCP wire layer, CLIs and benchmark.
"""
