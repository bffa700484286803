"""
Interactive buyer and seller command-line clients.
"""
