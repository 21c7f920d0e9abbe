"""``python -m shiftbench``: the same as the ``shiftbench`` command."""

from shiftbench.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
