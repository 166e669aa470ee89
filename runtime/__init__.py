"""What every service runs on: the event loop, the health and metrics endpoint, logging.

Below the services and above ``schemas``: imports only ``schemas`` and third-party packages.
"""
