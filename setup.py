"""Only the native extension; everything else about the package is in pyproject.toml.

gateway._sendall (gateway/sendall.py says why it exists) is built by every install, editable
ones included (`pip install -e '.[test]'`, `make venv`). The build is not optional: a machine
without a C compiler fails the install loudly rather than running the gateway on the slower
pure-Python fallback without anyone noticing.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gateway._sendall",
            ["gateway/_sendall.c"],
            extra_compile_args=["-pthread", "-Wall", "-Wextra"],
            extra_link_args=["-pthread"],
        ),
    ],
)
