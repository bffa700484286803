"""
Sans-I/O wire codecs: bytes in, events out; events in, bytes out.
"""
