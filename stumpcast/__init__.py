"""The ``stumpcast`` command line, the local stack launcher and benchmark plumbing."""
